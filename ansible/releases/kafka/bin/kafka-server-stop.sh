#!/usr/bin/env bash
# Stops the Kafka nodes (kafka.Kafka) running on this host with SIGNAL (default TERM: a controlled
# shutdown), like Apache Kafka's script: all of them, or only those whose server.properties has
# --node-id=N or --process-role=ROLE (node id wins when both are given). Exit 1 when none runs at all.
SIGNAL=${SIGNAL:-TERM}

node_id="" process_role=""
for arg in "$@"; do
  case $arg in
    --node-id=*) node_id=${arg#--node-id=} ;;
    --process-role=*) process_role=${arg#--process-role=} ;;
  esac
done
if [ -n "$node_id" ] && [ -n "$process_role" ]; then
  echo "When both node-id and process-role are provided, the value for node-id will take precedence"
  process_role=""
fi

# The first property of NAME in the file: "NAME=value" -> value.
property() {
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$2" | head -n 1 | tr -d '[:space:]'
}

# Every running node, with its server.properties (the argument after kafka.Kafka).
pids=() configs=()
for proc in /proc/[0-9]*; do
  [ -r "$proc/cmdline" ] || continue
  mapfile -d '' -t argv <"$proc/cmdline" 2>/dev/null || continue
  [[ ${argv[0]:-} == *java ]] || continue
  for ((i = 1; i < ${#argv[@]} - 1; i++)); do
    if [ "${argv[i]}" = kafka.Kafka ]; then
      pids+=("${proc#/proc/}")
      # Read through the node's own view of the filesystem (a node in a container has its own /etc); a
      # relative path is relative to the node's working directory.
      if [[ ${argv[i + 1]} == /* ]]; then configs+=("$proc/root${argv[i + 1]}"); else configs+=("$proc/cwd/${argv[i + 1]}"); fi
      break
    fi
  done
done
if [ ${#pids[@]} -eq 0 ]; then
  echo "No kafka server to stop"
  exit 1
fi

# Without a filter all of them; with one, those whose configuration matches (none may: exit 0).
selected=()
for i in "${!pids[@]}"; do
  if [ -n "$node_id$process_role" ]; then
    if [ ! -r "${configs[i]}" ]; then
      echo "Cannot read the configuration file ${configs[i]} of process ${pids[i]}."
      exit 1
    fi
    if [ -n "$node_id" ]; then
      [ "$(property node.id "${configs[i]}")" = "$node_id" ] || continue
    else
      [ "$(property process.roles "${configs[i]}")" = "$process_role" ] || continue
    fi
  fi
  selected+=("${pids[i]}")
done
[ ${#selected[@]} -eq 0 ] || kill -s "$SIGNAL" "${selected[@]}"
