#!/usr/bin/env bash
# Starts the Docker engine the molecule scenarios use, or reuses the one already running.
#
# The engine listens on its own socket and keeps its own data root, so it never touches a system
# Docker. It outlives the caller (tests and CI call this script before every run; the second call
# finds the engine answering and returns at once). Prints the DOCKER_HOST value to export.
#
# Environment (all optional):
#   MLSTACK_DOCKER_SOCKET     unix socket path            (default /run/mlstack-docker.sock)
#   MLSTACK_DOCKER_DATA_ROOT  images and containers       (default /var/lib/mlstack-docker)
#   MLSTACK_DOCKER_LOG        engine log                  (default /var/log/mlstack-dockerd.log)
set -euo pipefail

socket=${MLSTACK_DOCKER_SOCKET:-/run/mlstack-docker.sock}
data_root=${MLSTACK_DOCKER_DATA_ROOT:-/var/lib/mlstack-docker}
log=${MLSTACK_DOCKER_LOG:-/var/log/mlstack-dockerd.log}
exec_root=${socket%.sock}.d
docker_host="unix://$socket"

answering() { docker -H "$docker_host" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

for tool in docker dockerd flock; do
  command -v "$tool" >/dev/null || { echo "dockerd.sh: '$tool' not found; run 'make system-deps'" >&2; exit 1; }
done

# Two test workers may start at the same moment: one starts the engine, the other waits and reuses it.
exec 9>"${socket%.sock}.lock"
flock 9

if ! answering; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "dockerd.sh: no engine answers on $socket and starting one needs root" >&2
    exit 1
  fi
  mkdir -p "$data_root" "$exec_root" "$(dirname "$log")"
  # The engine's containers (systemd, dbus, firewalld) need more open files than the default limit.
  ulimit -n 20000
  # setsid: the engine must survive the test run that started it. 9>&-: it must not hold the lock.
  setsid dockerd --data-root "$data_root" --exec-root "$exec_root" --host "$docker_host" \
    --pidfile "$exec_root/dockerd.pid" >>"$log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 1 120); do
    answering && break
    sleep 0.5
  done
  if ! answering; then
    echo "dockerd.sh: the engine did not answer on $socket within 60 s; the end of $log says:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
fi
echo "$docker_host"
