#!/usr/bin/env bash
# Builds kafka_<scala>-<version>.tgz and its .sha512 into OUT_DIR (default build/releases): an Apache
# Kafka release laid out like the official tarball (bin/, libs/, config/), with the jars of pom.xml
# resolved from Maven Central and verified, and our own launcher scripts and configuration beside them.
# `make releases` runs it. Usage: build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ansible/releases/lib.sh
. "$here/../lib.sh"

out=$(mkdir -p "${1:-build/releases}" && cd "${1:-build/releases}" && pwd)
release_need mvn java sha1sum sha512sum tar gzip unzip
version=$(pom_property "$here/pom.xml" kafka.version)
scala=$(pom_property "$here/pom.xml" scala.binary.version)
name=kafka_$scala-$version
work=$out/.work/$name
rm -rf "$work"

resolve_verified_jars "$here/pom.xml" "$work" "$name.tgz"
stage=$work/stage
mkdir -p "$stage/$name"
kafka_jar_dir() { echo libs; }
place_jars "$work" "$stage/$name" kafka_jar_dir libs.sha1
cp -R "$here/bin" "$here/config" "$stage/$name/"
sed -e "s/@VERSION@/$version/g" -e "s/@SCALA@/$scala/g" "$here/README.release" >"$stage/$name/README"

# The release must start its tools: every main class bin/ names is in a jar of libs/.
check_main_classes "$stage/$name" '\b(org\.apache\.)?kafka(\.[a-z0-9_]+)*\.[A-Z][A-Za-z0-9_]*' "$here"/bin/*.sh

finish_release "$stage" "$name" "$out" "$name.tgz" "$work"
