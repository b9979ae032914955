"""User data for EC2 nodes: format and mount the node's encrypted EBS data volume at /data.

The volume is found by its NVMe serial (``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol...``),
never by a device name, which Nitro instances do not keep. It is attached after the instance starts,
so the script waits for it. HDFS and Kafka directories live under it (see ``data_directories``).
"""

from __future__ import annotations

import re

DATA_MOUNT = "/data"
HDFS_DIR = f"{DATA_MOUNT}/hdfs"
KAFKA_DIR = f"{DATA_MOUNT}/kafka"
_VOLUME_ID = re.compile(r"^vol-[0-9a-f]{8,17}$")

_SCRIPT = """#!/bin/bash
# Written by the mlstack Pulumi program: mount the EBS data volume {volume_id} at {mount}.
set -euo pipefail
device=/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{serial}
for _ in $(seq 1 120); do
  [ -e "$device" ] && break
  sleep 5
done
if [ ! -e "$device" ]; then
  echo "mlstack: data volume {volume_id} did not appear at $device after 10 minutes" >&2
  exit 1
fi
if ! blkid "$device" >/dev/null 2>&1; then
  mkfs.xfs -L mlstack-data "$device"
fi
uuid=$(blkid -s UUID -o value "$device")
mkdir -p {mount}
if ! grep -q "UUID=$uuid" /etc/fstab; then
  echo "UUID=$uuid {mount} xfs defaults,noatime,nofail 0 2" >> /etc/fstab
fi
mountpoint -q {mount} || mount {mount}
mkdir -p {directories}
"""


def data_volume_script(volume_id: str) -> str:
    """The user data script for a node whose data volume is ``volume_id``."""
    if not _VOLUME_ID.match(volume_id):
        raise ValueError(f"{volume_id!r} is not an EBS volume id (vol-...)")
    return _SCRIPT.format(
        volume_id=volume_id,
        serial=volume_id.replace("-", ""),
        mount=DATA_MOUNT,
        directories=f"{HDFS_DIR} {KAFKA_DIR}",
    )


def data_directories(groups: tuple[str, ...]) -> dict[str, list[str]]:
    """The inventory variables that point HDFS and Kafka at the data volume."""
    directories: dict[str, list[str]] = {}
    if "hdfs_datanodes" in groups:
        directories["hdfs_datanode_data_dirs"] = [HDFS_DIR]
    if "kafka_brokers" in groups:
        directories["kafka_log_dirs"] = [KAFKA_DIR]
    return directories
