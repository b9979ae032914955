"""Bad data-tier input stops playbooks/preflight.yml (the first play of site.yml) with a message naming
what to fix: an even number of KRaft controllers, an explicit replication above the DataNodes or brokers,
a data disk that is not mounted, a release file that does not match its published checksum. A valid
inventory passes, with the replication-clamp warning, reading both checksum file formats (Hadoop's BSD
style, Kafka's gpg --print-md style) and checking the JMX exporter jar (on by default) against its pin.

The hosts are this machine under several inventory names (local connection, no privilege escalation):
preflight only asserts and reads, so nothing changes here; the release files are small stand-ins in a
temporary air-gap directory, checked the way the real ones are.
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import sys
import tarfile

import pytest

from tests.ansible.support import (
    ANSIBLE_DIR,
    ROLES_DIR,
    PlaybookOutcome,
    assert_stopped_with,
    load_yaml,
    run_playbook_json,
)

PREFLIGHT = ANSIBLE_DIR / "playbooks" / "preflight.yml"
_HDFS_DEFAULTS = load_yaml(ROLES_DIR / "hdfs" / "defaults" / "main.yml")
_KAFKA_DEFAULTS = load_yaml(ROLES_DIR / "kafka" / "defaults" / "main.yml")
# Stand-in tarballs of the roles' default versions (their top directory and their file name).
HADOOP_TOP = f"hadoop-{_HDFS_DEFAULTS['hdfs_version']}"
KAFKA_TOP = f"kafka_{_KAFKA_DEFAULTS['kafka_scala_version']}-{_KAFKA_DEFAULTS['kafka_version']}"
HADOOP = f"{HADOOP_TOP}.tar.gz"
KAFKA = f"{KAFKA_TOP}.tgz"
JMX_VERSION = _KAFKA_DEFAULTS["kafka_jmx_exporter_version"]
JMX_JAR = f"jmx_prometheus_javaagent-{JMX_VERSION}.jar"
# A stand-in for the JMX exporter jar (an empty zip). Maven Central publishes no SHA-256 for the jar, so
# the roles pin one; the inventory pins the stand-in's here (test_jmx_exporter.py runs the real jar
# against the roles' own pins).
JMX_STAND_IN = b"PK\x05\x06" + bytes(18)
JMX_PINS = {
    "kafka_jmx_exporter_sha256": hashlib.sha256(JMX_STAND_IN).hexdigest(),
    "hdfs_jmx_exporter_sha256": hashlib.sha256(JMX_STAND_IN).hexdigest(),
}

# One ansible-playbook run each (10-20 s on a loaded 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("data_tier_preflight")]


def tarball(top: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"#!/bin/sh\n"
        info = tarfile.TarInfo(f"{top}/bin/placeholder")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def airgap(tmp_path) -> pathlib.Path:
    directory = tmp_path / "airgap"
    directory.mkdir()
    hadoop = tarball(HADOOP_TOP)
    (directory / HADOOP).write_bytes(hadoop)
    (directory / f"{HADOOP}.sha512").write_text(f"SHA512 ({HADOOP}) = {hashlib.sha512(hadoop).hexdigest()}\n")
    kafka = tarball(KAFKA_TOP)
    (directory / KAFKA).write_bytes(kafka)
    digest = hashlib.sha512(kafka).hexdigest().upper()
    groups = [digest[i : i + 8] for i in range(0, len(digest), 8)]
    # As Apache Kafka publishes it: "<file>: " then groups of 8 hex digits over several lines.
    (directory / f"{KAFKA}.sha512").write_text(
        f"{KAFKA}: {' '.join(groups[:6])}\n{' ' * (len(KAFKA) + 2)}{' '.join(groups[6:])}\n"
    )
    (directory / JMX_JAR).write_bytes(JMX_STAND_IN)
    return directory


@pytest.fixture
def disks(tmp_path) -> pathlib.Path:
    for disk in ("disk1", "disk2"):
        (tmp_path / "data" / disk).mkdir(parents=True)
    return tmp_path / "data"


def inventory(tmp_path, airgap, disks, groups: dict[str, list[str]], **variables) -> dict:
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
    }
    return {
        "all": {
            "vars": {
                "hdfs_install_source": "airgap",
                "hdfs_airgap_dir": str(airgap),
                "kafka_install_source": "airgap",
                "kafka_airgap_dir": str(airgap),
                "kafka_cluster_id_file": str(tmp_path / "kafka-cluster-id"),
                "hdfs_datanode_data_dirs": [str(disks / "disk1" / "hdfs")],
                "hdfs_namenode_name_dirs": [str(disks / "disk1" / "name")],
                "kafka_log_dirs": [str(disks / "disk2" / "kafka")],
                **JMX_PINS,
                **variables,
            },
            "children": {group: {"hosts": {name: host for name in names}} for group, names in groups.items()},
        }
    }


SMALL = {
    "hdfs_namenodes": ["node1"],
    "hdfs_datanodes": ["node2", "node3"],
    "kafka_controllers": ["node1", "node2", "node3"],
    "kafka_brokers": ["node1", "node2", "node3"],
}


@pytest.fixture(scope="module")
def fact_cache(tmp_path_factory) -> pathlib.Path:
    """One fact cache for the module's runs: every inventory host is this machine, gathered once."""
    return tmp_path_factory.mktemp("facts")


def run_preflight(tmp_path, document: dict, fact_cache: pathlib.Path) -> PlaybookOutcome:
    return run_playbook_json(
        PREFLIGHT,
        document,
        tmp_path,
        ANSIBLE_CACHE_PLUGIN="ansible.builtin.jsonfile",
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(fact_cache),
    )


def test_a_valid_small_inventory_passes_warns_about_the_lowered_replication_and_changes_nothing(
    tmp_path, airgap, disks, fact_cache
):
    before = {path: path.stat().st_mtime_ns for path in disks.rglob("*")}
    outcome = run_preflight(tmp_path, inventory(tmp_path, airgap, disks, SMALL), fact_cache)
    assert {path: path.stat().st_mtime_ns for path in disks.rglob("*")} == before, (
        "preflight changed the disks"
    )
    assert outcome.returncode == 0, outcome.failed
    warnings = [m for m in outcome.other if m.startswith("WARNING:")]
    assert any(
        "hdfs_datanodes has 2 hosts" in m and "replicates each block 2 times" in m for m in warnings
    ), outcome.other
    assert not (tmp_path / "kafka-cluster-id").exists(), "preflight wrote the cluster id"


def test_an_even_number_of_kraft_controllers_and_a_replication_above_the_brokers_are_both_named(
    tmp_path, airgap, disks, fact_cache
):
    # One run: both are items of the same check, which names every failing item before the run stops.
    groups = {**SMALL, "kafka_controllers": ["node1", "node2"]}
    outcome = run_preflight(
        tmp_path, inventory(tmp_path, airgap, disks, groups, kafka_replication_factor=4), fact_cache
    )
    assert_stopped_with(outcome, "kafka_controllers has 2 hosts", "needs an odd number (1, 3 or 5)")
    assert_stopped_with(outcome, "kafka_replication_factor is 4, but kafka_brokers has 3 hosts")


def test_an_explicit_hdfs_replication_above_the_datanodes_is_refused(tmp_path, airgap, disks, fact_cache):
    outcome = run_preflight(
        tmp_path, inventory(tmp_path, airgap, disks, SMALL, hdfs_replication=3), fact_cache
    )
    assert_stopped_with(outcome, "hdfs_replication is 3, but hdfs_datanodes has only 2 hosts")


def test_a_data_directory_on_a_disk_that_is_not_mounted_is_refused(tmp_path, airgap, disks, fact_cache):
    missing = disks / "disk9" / "hdfs"
    variables = {"hdfs_datanode_data_dirs": [str(disks / "disk1" / "hdfs"), str(missing)]}
    outcome = run_preflight(tmp_path, inventory(tmp_path, airgap, disks, SMALL, **variables), fact_cache)
    assert_stopped_with(outcome, f"hdfs_datanode_data_dirs has {missing}", f"{missing.parent} does not exist")


def test_a_release_that_does_not_match_its_published_checksum_is_refused(tmp_path, airgap, disks, fact_cache):
    with (airgap / KAFKA).open("ab") as release:
        release.write(b"tampered")
    outcome = run_preflight(tmp_path, inventory(tmp_path, airgap, disks, SMALL), fact_cache)
    assert_stopped_with(outcome, f"Checksum mismatch: {airgap}/{KAFKA} has SHA512", f"{KAFKA}.sha512 says")
