#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real: a container engine for molecule,
# debootstrap to build the systemd test image, Prometheus (promtool, node_exporter), and Maven with a JDK to
# assemble the Kafka release from Maven Central (make releases) and run it in the streaming tests, and
# PostgreSQL for the MLflow tracking server's tests.
set -euo pipefail

packages=(
  docker.io            # container engine for the molecule scenarios
  debootstrap          # builds the Debian 12 systemd image (no registry to pull from)
  prometheus           # real Prometheus and promtool for rule tests and the scrape test
  prometheus-node-exporter
  maven                # resolves the release jars from Maven Central (ansible/releases/)
  openjdk-17-jre-headless  # runs Kafka (4.x needs Java 17) and Maven
  unzip                # the release build checks that libs/ holds every class bin/ starts
  postgresql           # the MLflow tracking server's backend store, as in the cluster
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
