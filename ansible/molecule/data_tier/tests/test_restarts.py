"""Restart only on change, format once: the state recorded by side_effect.yml (after converge and the
idempotence run) against the state after the side effect, which re-ran hdfs.yml unchanged and kafka.yml
with log.retention.hours changed."""

import itertools
import json
import pathlib

import pytest
from conftest import inventory_host, inventory_hosts

testinfra_hosts = inventory_hosts("all")
KAFKA_NODES = sorted(set(inventory_hosts("kafka_controllers") + inventory_hosts("kafka_brokers")))
assert KAFKA_NODES, "the scenario inventory has no Kafka hosts"
HDFS_UNITS = {name: ["hdfs-namenode"] for name in inventory_hosts("hdfs_namenodes")}
for _name in inventory_hosts("hdfs_datanodes"):
    HDFS_UNITS.setdefault(_name, []).append("hdfs-datanode")
# fake_kafka_release: a restarted node counts as caught up this long after it started (kafka.py).
FAKE_CATCH_UP_S = 2.0
STORAGE_FILES = [
    "/var/lib/hdfs-name/current/VERSION",
    "/var/lib/hdfs-data/current/VERSION",
    "/var/lib/kafka-logs/meta.properties",
]


@pytest.fixture
def before(host, scenario_vars) -> dict:
    artifacts = scenario_vars("molecule_artifacts")["molecule_artifacts"]
    return json.loads(
        pathlib.Path(artifacts, f"before-side-effect-{host.backend.get_hostname()}.json").read_text()
    )


def unit_property(host, unit: str, name: str) -> str:
    return host.run(f"systemctl show {unit} -p {name} --value").stdout.strip()


def test_hdfs_daemons_were_not_restarted_by_the_re_converge(host, before):
    for unit in HDFS_UNITS.get(host.backend.get_hostname(), []):
        assert unit_property(host, unit, "MainPID") == before["units"][unit]["MainPID"] != "0", unit


def test_the_changed_kafka_setting_restarted_kafka(host, before):
    assert before["units"]["kafka"]["ActiveState"] == "active"
    assert unit_property(host, "kafka", "MainPID") != before["units"]["kafka"]["MainPID"]


def test_kafka_started_twice_only_at_converge_and_at_the_rolling_restart(host):
    # Not restarted by the idempotence run, nor twice by the side effect.
    starts = host.run("journalctl --unit kafka --grep 'Kafka Server started' --no-pager --output cat").stdout
    assert len(starts.splitlines()) == 2, starts


@pytest.mark.parametrize("path", STORAGE_FILES)
def test_no_storage_was_formatted_again(host, before, path):
    if before["files"][path] is None:
        pytest.skip(f"{path} is not storage of {host.backend.get_hostname()}")
    assert host.file(path).content_string == before["files"][path]


def test_the_rolling_restart_took_one_node_at_a_time_each_after_the_previous_caught_up(host):
    if host.backend.get_hostname() != KAFKA_NODES[0]:
        pytest.skip("checked once, for the whole cluster")
    windows = []
    for name in KAFKA_NODES:
        node = inventory_host(name)
        # Monotonic microseconds: the containers share one kernel clock.
        windows.append(
            (
                int(unit_property(node, "kafka", "ActiveExitTimestampMonotonic")),
                int(unit_property(node, "kafka", "ActiveEnterTimestampMonotonic")),
                name,
            )
        )
    assert [name for _, _, name in sorted(windows)] == KAFKA_NODES, "restarted in inventory order"
    for (_, previous_up, previous), (stopping, _, name) in itertools.pairwise(windows):
        gap_s = (stopping - previous_up) / 1e6
        assert gap_s >= FAKE_CATCH_UP_S, (
            f"{name} stopped {gap_s:.1f} s after {previous} came back, before it caught up"
        )
