#!/usr/bin/env bash
# Runs a Kafka main class on this release's classpath (libs/*), with the environment Apache Kafka's own
# bin/kafka-run-class.sh reads:
#   JAVA_HOME                   java is $JAVA_HOME/bin/java, else java on PATH
#   KAFKA_HEAP_OPTS             default -Xmx256M
#   KAFKA_JVM_PERFORMANCE_OPTS  default G1 with short pauses
#   KAFKA_JMX_OPTS, JMX_PORT    local JMX on; remote JMX (no auth, no TLS) on JMX_PORT when set
#   KAFKA_LOG4J_OPTS            default: the tools' config/tools-log4j2.yaml (warnings to stderr)
#   LOG_DIR                     log directory (default <release>/logs), -Dkafka.logs.dir for Log4j
#   KAFKA_OPTS                  more JVM options (e.g. -javaagent:... for the Prometheus JMX exporter)
#   KAFKA_GC_LOG_OPTS, KAFKA_DEBUG, JAVA_DEBUG_PORT, JAVA_DEBUG_OPTS, CLASSPATH (put before libs/*)
# Options before the class: -daemon (in the background, output to LOG_DIR/<name>.out), -name NAME,
# -loggc (GC log in LOG_DIR/<name>-gc.log). The exit status is the JVM's.
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] [-name servicename] [-loggc] classname [opts]"
  exit 1
fi

base_dir=$(cd "$(dirname "$0")/.." && pwd)

CLASSPATH="${CLASSPATH:+$CLASSPATH:}$base_dir/libs/*"
if ! compgen -G "$base_dir/libs/*.jar" >/dev/null; then
  echo "Classpath is empty: $base_dir/libs has no jars." >&2
  exit 1
fi

if [ -z "${KAFKA_JMX_OPTS:-}" ]; then
  KAFKA_JMX_OPTS="-Dcom.sun.management.jmxremote=true -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false"
fi
if [ -n "${JMX_PORT:-}" ]; then
  KAFKA_JMX_OPTS="$KAFKA_JMX_OPTS -Dcom.sun.management.jmxremote.port=$JMX_PORT"
  # The RMI port as well (a fixed one passes firewalls and container port maps), unless it is set.
  case $KAFKA_JMX_OPTS in
    *-Dcom.sun.management.jmxremote.rmi.port=*) ;;
    *) KAFKA_JMX_OPTS="$KAFKA_JMX_OPTS -Dcom.sun.management.jmxremote.rmi.port=$JMX_PORT" ;;
  esac
fi

LOG_DIR=${LOG_DIR:-$base_dir/logs}
if [ -z "${KAFKA_LOG4J_OPTS:-}" ]; then
  # A tool: warnings and errors to the console only.
  KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=$base_dir/config/tools-log4j2.yaml"
else
  mkdir -p "$LOG_DIR"
fi
KAFKA_LOG4J_OPTS="-Dkafka.logs.dir=$LOG_DIR $KAFKA_LOG4J_OPTS"

KAFKA_OPTS=${KAFKA_OPTS:-}
if [ -n "${KAFKA_DEBUG:-}" ]; then
  JAVA_DEBUG_PORT=${JAVA_DEBUG_PORT:-5005}
  JAVA_DEBUG_OPTS=${JAVA_DEBUG_OPTS:-"-agentlib:jdwp=transport=dt_socket,server=y,suspend=${DEBUG_SUSPEND_FLAG:-n},address=$JAVA_DEBUG_PORT"}
  echo "Enabling Java debug options: $JAVA_DEBUG_OPTS"
  KAFKA_OPTS="$JAVA_DEBUG_OPTS $KAFKA_OPTS"
fi

if [ -n "${JAVA_HOME:-}" ]; then
  JAVA=$JAVA_HOME/bin/java
else
  JAVA=java
fi

KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:-"-Xmx256M"}
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:-"-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"}

DAEMON_MODE=false
DAEMON_NAME=kafka
GC_LOG_ENABLED=false
while [ $# -gt 0 ]; do
  case $1 in
    -name)
      DAEMON_NAME=$2
      shift 2
      ;;
    -loggc)
      [ -n "${KAFKA_GC_LOG_OPTS:-}" ] || GC_LOG_ENABLED=true
      shift
      ;;
    -daemon)
      DAEMON_MODE=true
      shift
      ;;
    *)
      break
      ;;
  esac
done
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] [-name servicename] [-loggc] classname [opts]"
  exit 1
fi

if [ "$GC_LOG_ENABLED" = true ]; then
  mkdir -p "$LOG_DIR"
  KAFKA_GC_LOG_OPTS="-Xlog:gc*:file=$LOG_DIR/$DAEMON_NAME-gc.log:time,tags:filecount=10,filesize=100M"
fi

# The option variables hold several words each: split them, as the release's script does.
# shellcheck disable=SC2086
if [ "$DAEMON_MODE" = true ]; then
  mkdir -p "$LOG_DIR"
  nohup "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_GC_LOG_OPTS:-} $KAFKA_JMX_OPTS $KAFKA_LOG4J_OPTS \
    -cp "$CLASSPATH" $KAFKA_OPTS "$@" >"$LOG_DIR/$DAEMON_NAME.out" 2>&1 </dev/null &
else
  exec "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS ${KAFKA_GC_LOG_OPTS:-} $KAFKA_JMX_OPTS $KAFKA_LOG4J_OPTS \
    -cp "$CLASSPATH" $KAFKA_OPTS "$@"
fi
