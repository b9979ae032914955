#!/usr/bin/env bash
# Builds jmx_prometheus_javaagent-<version>.jar and its .sha256 into OUT_DIR (default build/releases): the
# Prometheus JMX exporter Java agent of pom.xml, resolved from Maven Central with strict checksums and
# verified against Central's .sha1. The kafka and hdfs roles install it from there in an air gap and pin its
# SHA-256 (kafka_jmx_exporter_sha256, hdfs_jmx_exporter_sha256). `make releases` runs it.
# Usage: build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ansible/releases/lib.sh
. "$here/../lib.sh"

out=$(mkdir -p "${1:-build/releases}" && cd "${1:-build/releases}" && pwd)
release_need mvn java sha1sum sha256sum unzip
version=$(pom_property "$here/pom.xml" jmx.exporter.version)
name=jmx_prometheus_javaagent-$version.jar
work=$out/.work/jmx-exporter-$version
rm -rf "$work"

resolve_verified_jars "$here/pom.xml" "$work" "$name"
jar=$(find "$work/resolved" -name "$name")
[ -n "$jar" ] && [ "$(find "$work/resolved" -name '*.jar' | wc -l)" -eq 1 ] ||
  release_fail "$name: Maven resolved $(find "$work/resolved" -name '*.jar' -printf '%f ')instead of that one jar"
# An agent jar names its entry point; without it -javaagent refuses to start the daemon.
unzip -p "$jar" META-INF/MANIFEST.MF | grep -q '^Premain-Class:' ||
  release_fail "$name: the jar has no Premain-Class, so it is not a Java agent"

rm -f "$out/$name" "$out/$name.sha256"
cp "$jar" "$out/$name.partial"
(cd "$out" && sha256sum "$name.partial" | sed 's/\.partial$//' >"$name.sha256.partial")
mv "$out/$name.sha256.partial" "$out/$name.sha256"
mv "$out/$name.partial" "$out/$name"
rm -rf "$work"
rmdir "$out/.work" 2>/dev/null || true
echo "built $out/$name ($(du -h "$out/$name" | cut -f 1)), SHA-256 $(cut -d ' ' -f 1 "$out/$name.sha256")"
