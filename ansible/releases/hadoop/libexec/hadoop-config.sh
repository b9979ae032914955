# shellcheck shell=bash
# Sourced by bin/hdfs and bin/hadoop: the environment and the JVM launch that Apache Hadoop 3's own
# libexec/hadoop-functions.sh give them, for what the mlstack roles and the tests use.
#   HADOOP_HOME           this release (found from the script's location)
#   HADOOP_CONF_DIR       configuration (default $HADOOP_HOME/etc/hadoop; --config DIR sets it too);
#                         its hadoop-env.sh is read first
#   JAVA_HOME             required, as in Hadoop 3 (java is $JAVA_HOME/bin/java)
#   HADOOP_HEAPSIZE_MAX, HADOOP_HEAPSIZE_MIN
#                         -Xmx / -Xms (a bare number is MiB)
#   HADOOP_OPTS           JVM options of every command; HADOOP_CLIENT_OPTS of the client commands;
#                         HDFS_<DAEMON>_OPTS of a daemon (HDFS_NAMENODE_OPTS, HDFS_DATANODE_OPTS ...)
#   HADOOP_LOG_DIR        log directory (default $HADOOP_HOME/logs), HADOOP_LOGFILE, HADOOP_IDENT_STRING
#   HADOOP_ROOT_LOGGER    Log4j root logger in the foreground (default INFO,console);
#   HADOOP_DAEMON_ROOT_LOGGER
#                         with --daemon (default INFO,RFA: HADOOP_LOG_DIR/HADOOP_LOGFILE)
#   HADOOP_PID_DIR        pid files of --daemon (default /tmp), HADOOP_STOP_TIMEOUT (default 5 s)
#   HADOOP_CLASSPATH      put before the release's jars; HADOOP_USER_CLASSPATH_FIRST=no puts it after

hadoop_error() {
  echo "ERROR: $*" >&2
}

# hadoop_parse_args "$@": --config DIR, --daemon MODE, --loglevel LEVEL, --help; sets HADOOP_SHIFT.
hadoop_parse_args() {
  HADOOP_SHIFT=0
  while [ $# -gt 0 ]; do
    case $1 in
      --config)
        [ -n "${2:-}" ] && [ -d "$2" ] || { hadoop_error "No parameter provided for --config or $2 is not a directory"; exit 1; }
        HADOOP_CONF_DIR=$2
        shift 2
        HADOOP_SHIFT=$((HADOOP_SHIFT + 2))
        ;;
      --daemon)
        case ${2:-} in
          start | stop | status) HADOOP_DAEMON_MODE=$2 ;;
          *) hadoop_error "--daemon must be followed by either \"start\", \"stop\", or \"status\"."; exit 1 ;;
        esac
        shift 2
        HADOOP_SHIFT=$((HADOOP_SHIFT + 2))
        ;;
      --loglevel)
        [ -n "${2:-}" ] || { hadoop_error "--loglevel needs a level"; exit 1; }
        HADOOP_LOGLEVEL=$2
        shift 2
        HADOOP_SHIFT=$((HADOOP_SHIFT + 2))
        ;;
      *) break ;;
    esac
  done
}

hadoop_bootstrap() {
  HADOOP_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  export HADOOP_HOME
  HADOOP_CONF_DIR=${HADOOP_CONF_DIR:-$HADOOP_HOME/etc/hadoop}
}

# After the arguments (--config may have moved HADOOP_CONF_DIR): hadoop-env.sh, JAVA_HOME, the defaults.
hadoop_environment() {
  export HADOOP_CONF_DIR
  if [ -f "$HADOOP_CONF_DIR/hadoop-env.sh" ]; then
    # shellcheck disable=SC1091
    . "$HADOOP_CONF_DIR/hadoop-env.sh"
  fi
  if [ -z "${JAVA_HOME:-}" ]; then
    hadoop_error "JAVA_HOME is not set and could not be found."
    exit 1
  fi
  if [ ! -x "$JAVA_HOME/bin/java" ]; then
    hadoop_error "JAVA_HOME $JAVA_HOME does not exist."
    exit 1
  fi
  JAVA=$JAVA_HOME/bin/java
  HADOOP_LOG_DIR=${HADOOP_LOG_DIR:-$HADOOP_HOME/logs}
  HADOOP_IDENT_STRING=${HADOOP_IDENT_STRING:-${USER:-$(id -un)}}
  HADOOP_PID_DIR=${HADOOP_PID_DIR:-/tmp}
  HADOOP_STOP_TIMEOUT=${HADOOP_STOP_TIMEOUT:-5}
  HADOOP_ROOT_LOGGER=${HADOOP_ROOT_LOGGER:-${HADOOP_LOGLEVEL:-INFO},console}
  HADOOP_DAEMON_ROOT_LOGGER=${HADOOP_DAEMON_ROOT_LOGGER:-${HADOOP_LOGLEVEL:-INFO},RFA}
}

hadoop_classpath() {
  local share=$HADOOP_HOME/share/hadoop
  local release="$HADOOP_CONF_DIR:$share/common/lib/*:$share/common/*:$share/hdfs:$share/hdfs/*"
  if [ -z "${HADOOP_CLASSPATH:-}" ]; then
    printf '%s\n' "$release"
  elif [ "${HADOOP_USER_CLASSPATH_FIRST:-yes}" = no ]; then
    printf '%s\n' "$release:$HADOOP_CLASSPATH"
  else
    printf '%s\n' "$HADOOP_CLASSPATH:$release"
  fi
}

# hadoop_print_classpath [--glob]: the classpath, with --glob as Java expands the wildcards (one jar each).
hadoop_print_classpath() {
  local entry first=1
  if [ "${1:-}" != --glob ]; then
    hadoop_classpath
    return
  fi
  IFS=: read -r -a entries <<<"$(hadoop_classpath)"
  for entry in "${entries[@]}"; do
    if [[ $entry == *'/*' ]]; then
      for jar in "${entry%/\*}"/*.jar; do
        [ -e "$jar" ] || continue
        printf '%s%s' "$([ $first = 1 ] || echo :)" "$jar"
        first=0
      done
    else
      printf '%s%s' "$([ $first = 1 ] || echo :)" "$entry"
      first=0
    fi
  done
  echo
}

# The modules Hadoop's code (and Jersey's JAXB, behind WebHDFS) opens by reflection; Java 9+ refuses that
# unless told, so on those JVMs the options are given, as Apache Hadoop's own scripts do for Java 17.
HADOOP_JAVA_OPENS="java.base/java.lang java.base/java.lang.reflect java.base/java.io java.base/java.net
  java.base/java.nio java.base/java.util java.base/java.util.concurrent java.base/sun.nio.ch
  java.base/sun.net.dns java.base/sun.net.util java.security.jgss/sun.security.krb5"

hadoop_module_opts() {  # --add-opens for each of HADOOP_JAVA_OPENS when JAVA_HOME is a Java 9 or later
  local version module
  version=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$JAVA_HOME/release" 2>/dev/null)
  [ -n "$version" ] && [ "$version" -ge 9 ] || return 0
  for module in $HADOOP_JAVA_OPENS; do
    printf ' --add-opens=%s=ALL-UNNAMED' "$module"
  done
}

hadoop_heap_opt() {  # hadoop_heap_opt FLAG VALUE: -Xmx1024m from "1024", -Xmx1g from "1g"
  [ -n "$2" ] || return 0
  if [[ $2 =~ ^[0-9]+$ ]]; then printf ' %s%sm' "$1" "$2"; else printf ' %s%s' "$1" "$2"; fi
}

# hadoop_java_opts NAME DAEMON_OPTS_VAR: every JVM option, Hadoop's order (later options win).
hadoop_java_opts() {
  local name=$1 opts_var=$2 logfile=${HADOOP_LOGFILE:-hadoop-$HADOOP_IDENT_STRING-$1-$(hostname).log}
  local logger=$HADOOP_ROOT_LOGGER
  [ -z "${HADOOP_DAEMON_MODE:-}" ] || logger=$HADOOP_DAEMON_ROOT_LOGGER
  printf '%s' "-Djava.net.preferIPv4Stack=true$(hadoop_module_opts)$(hadoop_heap_opt -Xmx "${HADOOP_HEAPSIZE_MAX:-}")$(hadoop_heap_opt -Xms "${HADOOP_HEAPSIZE_MIN:-}")"
  printf ' %s' "-Dhadoop.log.dir=$HADOOP_LOG_DIR" "-Dhadoop.log.file=$logfile" "-Dhadoop.home.dir=$HADOOP_HOME" \
    "-Dhadoop.id.str=$HADOOP_IDENT_STRING" "-Dhadoop.root.logger=$logger" "-Dhadoop.policy.file=hadoop-policy.xml" \
    "-Dhadoop.security.logger=${HADOOP_SECURITY_LOGGER:-INFO,NullAppender}"
  printf ' %s' "${HADOOP_OPTS:-}" "${!opts_var:-}"
}

# hadoop_run NAME CLASS OPTS_VAR ARGS...: the class in the foreground (exec: the exit status is the JVM's),
# or with HADOOP_DAEMON_MODE start/stop/status as a background daemon with a pid file.
hadoop_run() {
  local name=$1 class=$2 opts_var=$3
  shift 3
  local classpath
  classpath=$(hadoop_classpath)
  local pidfile=$HADOOP_PID_DIR/hadoop-$HADOOP_IDENT_STRING-$name.pid
  local -a opts
  # Word splitting is the point: the *_OPTS variables hold several options.
  # shellcheck disable=SC2207
  opts=($(hadoop_java_opts "$name" "$opts_var"))
  case ${HADOOP_DAEMON_MODE:-} in
    "") exec "$JAVA" "-Dproc_$name" "${opts[@]}" -cp "$classpath" "$class" "$@" ;;
    status) hadoop_daemon_status "$name" "$pidfile" ;;
    stop) hadoop_daemon_stop "$name" "$pidfile" ;;
    start)
      if hadoop_daemon_status "$name" "$pidfile" >/dev/null; then
        echo "$name is running as process $(cat "$pidfile").  Stop it first and ensure $pidfile file is empty before retry."
        exit 1
      fi
      mkdir -p "$HADOOP_LOG_DIR" "$HADOOP_PID_DIR" || { hadoop_error "Unable to create $HADOOP_LOG_DIR or $HADOOP_PID_DIR"; exit 1; }
      local out host
      host=$(hostname)
      out=$HADOOP_LOG_DIR/hadoop-$HADOOP_IDENT_STRING-$name-$host.out
      nohup "$JAVA" "-Dproc_$name" "${opts[@]}" -cp "$classpath" "$class" "$@" >"$out" 2>&1 </dev/null &
      echo $! >"$pidfile"
      sleep 1
      if ! kill -0 "$!" 2>/dev/null; then
        hadoop_error "$name failed to start; see $out"
        exit 1
      fi
      ;;
  esac
}

hadoop_daemon_status() {  # 0 running, 1 dead with a pid file, 3 not running (Hadoop's codes)
  local name=$1 pidfile=$2
  if [ -f "$pidfile" ]; then
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "$name is running as process $(cat "$pidfile")."
      return 0
    fi
    echo "$name is stopped but its pid file $pidfile exists."
    return 1
  fi
  echo "$name is not running."
  return 3
}

hadoop_daemon_stop() {
  local name=$1 pidfile=$2 pid waited=0
  if ! hadoop_daemon_status "$name" "$pidfile" >/dev/null; then
    echo "no $name to stop"
    rm -f "$pidfile"
    return 0
  fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$HADOOP_STOP_TIMEOUT" ]; do
    sleep 1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "WARNING: $name did not stop gracefully after $HADOOP_STOP_TIMEOUT seconds: Trying to kill with kill -9"
    kill -KILL "$pid"
  fi
  rm -f "$pidfile"
}
