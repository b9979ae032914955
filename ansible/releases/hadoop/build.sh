#!/usr/bin/env bash
# Builds hadoop-<version>.tar.gz and its .sha512 into OUT_DIR (default build/releases): an Apache Hadoop
# release (HDFS) laid out like the official tarball (bin/, sbin/, libexec/, etc/hadoop/, share/hadoop/...),
# with the jars of pom.xml resolved from Maven Central and verified, and our own launcher scripts,
# configuration and (empty) web applications beside them. `make releases` runs it. Usage: build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=ansible/releases/lib.sh
. "$here/../lib.sh"

out=$(mkdir -p "${1:-build/releases}" && cd "${1:-build/releases}" && pwd)
release_need mvn java sha1sum sha512sum tar gzip unzip
version=$(pom_property "$here/pom.xml" hadoop.version)
name=hadoop-$version
work=$out/.work/$name
rm -rf "$work"

resolve_verified_jars "$here/pom.xml" "$work" "$name.tar.gz"
stage=$work/stage
mkdir -p "$stage/$name/share/hadoop/hdfs"

# As in the official tarball: Hadoop's own jars in common/ and hdfs/, everything they need in common/lib/.
hadoop_jar_dir() {
  case $1 in
    hadoop-hdfs-*) echo share/hadoop/hdfs ;;
    hadoop-common-*) echo share/hadoop/common ;;
    *) echo share/hadoop/common/lib ;;
  esac
}
place_jars "$work" "$stage/$name" hadoop_jar_dir share/hadoop/jars.sha1
cp -R "$here/bin" "$here/sbin" "$here/libexec" "$here/etc" "$stage/$name/"
cp -R "$here/webapps" "$stage/$name/share/hadoop/hdfs/"
sed -e "s/@VERSION@/$version/g" "$here/README.release" >"$stage/$name/README.txt"

check_main_classes "$stage/$name" '\borg\.apache\.hadoop(\.[a-z0-9_]+)*\.[A-Z][A-Za-z0-9_]*' \
  "$here"/bin/* "$here"/libexec/*.sh

# The NameNode and DataNode HTTP servers (WebHDFS) find their web applications on the classpath.
for app in hdfs datanode journal secondary; do
  [ -f "$stage/$name/share/hadoop/hdfs/webapps/$app/WEB-INF/web.xml" ] || release_fail "$name: no webapps/$app"
done

finish_release "$stage" "$name" "$out" "$name.tar.gz" "$work"
