# shellcheck shell=bash
# Shared steps of the release builds (sourced by ansible/releases/<component>/build.sh): resolve a pinned
# POM's jars from Maven Central, verify every jar against the SHA-1 that Central published for it, and
# pack a directory into a reproducible tarball with its SHA-512.
#
# Environment:
#   MAVEN_REPO_LOCAL  Maven's local repository (default ~/.m2/repository)
#   MAVEN_EXTRA_ARGS  more mvn arguments, e.g. "-o" or "-s settings.xml" (a mirror)
#   SOURCE_DATE_EPOCH mtime of every file in the tarball (default 2020-01-01T00:00:00Z)

release_fail() {
  echo "release build failed: $*" >&2
  exit 1
}

release_need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || release_fail "$tool is not installed (make system-deps installs it)"
  done
}

# pom_property POM NAME: the value of <NAME>...</NAME> in POM's <properties>.
pom_property() {
  local value
  value=$(sed -n "s:.*<$2>\\([^<]*\\)</$2>.*:\\1:p" "$1" | head -n 1)
  [ -n "$value" ] || release_fail "$1 has no <$2> property"
  printf '%s\n' "$value"
}

# resolve_verified_jars POM WORK LABEL: resolves POM's runtime dependencies into WORK/resolved (Maven's
# repository layout) with strict checksums, then checks each jar against the .sha1 that Maven downloaded
# from Central beside it in the local repository. Maven checks checksums only while downloading; the
# second check catches a jar damaged or replaced in the local repository since.
resolve_verified_jars() {
  local pom=$1 work=$2 label=$3
  local repo=${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}
  local -a extra=()
  # Word splitting is the point: MAVEN_EXTRA_ARGS holds several arguments.
  # shellcheck disable=SC2206
  [ -n "${MAVEN_EXTRA_ARGS:-}" ] && extra=($MAVEN_EXTRA_ARGS)
  mkdir -p "$work"
  cp "$pom" "$work/pom.xml"
  # -C (--strict-checksums): a download whose SHA-1 differs from Central's .sha1 fails the build.
  if ! mvn -B -q -C -f "$work/pom.xml" -Dmaven.repo.local="$repo" "${extra[@]}" \
    dependency:copy-dependencies -DoutputDirectory="$work/resolved" >"$work/mvn.log" 2>&1; then
    grep -E 'ERROR|Checksum|Could not' "$work/mvn.log" | head -n 20 >&2 || cat "$work/mvn.log" >&2
    release_fail "$label: Maven could not resolve and verify the jars of $pom (log: $work/mvn.log)"
  fi
  local jar rel published actual count=0
  while IFS= read -r jar; do
    rel=${jar#"$work/resolved/"}
    [ -f "$repo/$rel.sha1" ] ||
      release_fail "$label: $rel has no published .sha1 in $repo; delete $repo/$(dirname "$rel") and run again"
    published=$(grep -o -m 1 -E '^[0-9a-fA-F]{40}' "$repo/$rel.sha1" | tr 'A-F' 'a-f') || published=""
    actual=$(sha1sum "$jar" | cut -d ' ' -f 1)
    [ "$published" = "$actual" ] ||
      release_fail "$label: checksum mismatch for $rel: SHA-1 $actual, but Maven Central published" \
        "${published:-nothing readable}; delete $repo/$(dirname "$rel") and run again"
    count=$((count + 1))
  done < <(find "$work/resolved" -name '*.jar' | LC_ALL=C sort)
  [ "$count" -gt 0 ] || release_fail "$label: Maven resolved no jars from $pom"
}

# place_jars WORK ROOT PLACE LIST: each verified jar of WORK/resolved into ROOT/<dir>, where <dir> is what the
# function PLACE prints for the jar's file name, and ROOT/LIST ("<sha1>  <dir>/<jar>", for sha1sum -c in the
# unpacked release).
place_jars() {
  local work=$1 root=$2 place=$3 list=$4 jar name dir
  : >"$work/placed"
  while IFS= read -r jar; do
    name=$(basename "$jar")
    dir=$("$place" "$name")
    [ ! -e "$root/$dir/$name" ] || release_fail "two resolved jars are both named $name"
    mkdir -p "$root/$dir"
    cp "$jar" "$root/$dir/$name"
    echo "$dir/$name" >>"$work/placed"
  done < <(find "$work/resolved" -name '*.jar' | LC_ALL=C sort)
  (cd "$root" && LC_ALL=C sort "$work/placed" | xargs sha1sum) >"$root/$list"
}

# check_main_classes RELEASE_DIR PATTERN SCRIPT...: every class name matching the extended regular
# expression PATTERN in the SCRIPTs is in a jar of RELEASE_DIR, so that the release starts its tools.
check_main_classes() {
  local release=$1 pattern=$2 class classes
  shift 2
  classes=$(mktemp)
  find "$release" -name '*.jar' -exec unzip -Z1 {} \; >"$classes"
  while IFS= read -r class; do
    grep -qxF "${class//.//}.class" "$classes" ||
      { rm -f "$classes"; release_fail "$(basename "$release"): no jar holds $class, which a launcher starts"; }
  done < <(grep -ohE "$pattern" "$@" | sort -u)
  rm -f "$classes"
}

# pack_release STAGE NAME OUT_DIR FILE: STAGE/NAME as OUT_DIR/FILE and FILE.sha512 ("<hex>  FILE",
# as sha512sum writes it). Sorted entries, one mtime, root owner, fixed modes, gzip without a timestamp:
# the same inputs give the same bytes.
pack_release() {
  local stage=$1 name=$2 out=$3 file=$4
  local epoch=${SOURCE_DATE_EPOCH:-1577836800}
  find "$stage/$name" -type d -exec chmod 0755 {} +
  find "$stage/$name" -type f -exec chmod 0644 {} +
  local dir
  for dir in bin sbin libexec; do
    [ ! -d "$stage/$name/$dir" ] || find "$stage/$name/$dir" -type f -exec chmod 0755 {} +
  done
  mkdir -p "$out"
  rm -f "$out/$file" "$out/$file.sha512"
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$stage" -cf - "$name" | gzip -9 -n >"$out/$file.partial"
  (cd "$out" && sha512sum "$file.partial" | sed 's/\.partial$//' >"$file.sha512.partial")
  mv "$out/$file.sha512.partial" "$out/$file.sha512"
  mv "$out/$file.partial" "$out/$file"
}

# finish_release STAGE NAME OUT_DIR FILE WORK: packs the staged release (pack_release), removes the work
# directory and says what was built.
finish_release() {
  local stage=$1 name=$2 out=$3 file=$4 work=$5
  pack_release "$stage" "$name" "$out" "$file"
  rm -rf "$work"
  rmdir "$out/.work" 2>/dev/null || true
  echo "built $out/$file ($(du -h "$out/$file" | cut -f 1)), SHA-512 $(cut -c 1-16 "$out/$file.sha512")..."
}
