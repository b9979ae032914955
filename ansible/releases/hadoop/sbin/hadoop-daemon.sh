#!/usr/bin/env bash
# hadoop-daemon.sh [--config DIR] (start|stop|status) DAEMON [ARGS]: the Hadoop 2 interface, kept by
# Hadoop 3 as a wrapper of "hdfs --daemon MODE DAEMON" (pid files in HADOOP_PID_DIR, logs in HADOOP_LOG_DIR).
bin=$(cd "$(dirname "$0")/../bin" && pwd)
config=()
if [ "${1:-}" = --config ]; then
  config=(--config "$2")
  shift 2
fi
if [ $# -lt 2 ]; then
  echo "Usage: hadoop-daemon.sh [--config confdir] (start|stop|status) <hadoop-command> <args...>" >&2
  exit 1
fi
mode=$1
shift
exec "$bin/hdfs" "${config[@]}" --daemon "$mode" "$@"
