# shellcheck shell=bash
# Read by every hadoop and hdfs command before it starts Java (libexec/hadoop-config.sh lists the variables).
# JAVA_HOME is required:
# export JAVA_HOME=/usr/lib/jvm/java-17-openjdk
# export HADOOP_HEAPSIZE_MAX=1g
# export HADOOP_LOG_DIR=${HADOOP_HOME}/logs
# export HDFS_NAMENODE_OPTS="-Dhadoop.security.logger=INFO,RFAS"
