#!/usr/bin/env bash
# Starts a Kafka node (kafka.Kafka) with server.properties, in the foreground (systemd), or in the
# background with -daemon. Defaults as in Apache Kafka's script: a 1 GiB heap, the server's Log4j
# configuration config/log4j2.yaml (logs in LOG_DIR), and a GC log; KAFKA_HEAP_OPTS, KAFKA_LOG4J_OPTS and
# EXTRA_ARGS override them. Everything else: kafka-run-class.sh.
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] server.properties [--override property=value]*"
  exit 1
fi
base_dir=$(cd "$(dirname "$0")" && pwd)

export KAFKA_LOG4J_OPTS=${KAFKA_LOG4J_OPTS:-"-Dlog4j2.configurationFile=$base_dir/../config/log4j2.yaml"}
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-"-Xmx1G -Xms1G"}

EXTRA_ARGS=${EXTRA_ARGS-"-name kafkaServer -loggc"}
if [ "$1" = -daemon ]; then
  EXTRA_ARGS="-daemon $EXTRA_ARGS"
  shift
fi

# EXTRA_ARGS holds several options.
# shellcheck disable=SC2086
exec "$base_dir/kafka-run-class.sh" $EXTRA_ARGS kafka.Kafka "$@"
