#!/usr/bin/env bash
# Builds the Debian 12 systemd image the molecule scenarios run in, from Debian packages only
# (debootstrap + docker import: there is no registry to pull from). Builds once: the tag is a hash
# of this script, so the image is rebuilt only when it is missing or this recipe changed.
#
# Usage: molecule-image.sh            prints the image reference (building it first if needed) and
#                                     tags it :latest, the default of ansible/molecule/shared/platform.yml
# Environment: DOCKER_HOST (from tests/support/dockerd.sh), DEBIAN_MIRROR (default deb.debian.org).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)
repository=mlstack-molecule/debian12-systemd
image="$repository:$recipe_hash"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Role-independent packages only: what systemd, Ansible and the test doubles need to run at all.
# Everything a role installs must be installed by the role, in converge.
packages=python3,python3-apt,python3-yaml,systemd,systemd-sysv,dbus,iproute2,procps,sudo

if docker image inspect "$image" >/dev/null 2>&1; then
  docker tag "$image" "$repository:latest"
  echo "$image"
  exit 0
fi

exec 9>"/tmp/mlstack-molecule-image.lock"
flock 9
if docker image inspect "$image" >/dev/null 2>&1; then
  docker tag "$image" "$repository:latest"
  echo "$image"
  exit 0
fi
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "molecule-image.sh: '$tool' not found; run 'make system-deps'" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "molecule-image.sh: debootstrap needs root" >&2; exit 1; }

rootfs=$(mktemp -d /var/tmp/mlstack-debian12-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
chmod 0755 "$rootfs"  # apt's sandbox user must reach the lists inside the chroot
echo "molecule-image.sh: building $image with debootstrap (about a minute)" >&2
debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >&2

cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
# A host image keeps the .deb files it downloaded; the scenarios mount a cache directory there.
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >"$rootfs/etc/apt/apt.conf.d/90keep-downloads"
# Package lists as a real host has them; roles still refresh them when older than their cache time.
chroot "$rootfs" apt-get update -q >&2
chroot "$rootfs" apt-get clean
# Background apt runs would race the role's own package installs for the dpkg lock.
chroot "$rootfs" systemctl mask apt-daily.timer apt-daily-upgrade.timer >&2
# Each container gets its own machine id at boot, as a freshly installed host does.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"

tar -C "$rootfs" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --message "mlstack molecule image, recipe $recipe_hash ($here/$(basename "${BASH_SOURCE[0]}"))" \
  - "$image" >&2
docker tag "$image" "$repository:latest"
echo "$image"
