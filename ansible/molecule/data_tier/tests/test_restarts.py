"""Restart only on change, format once, lose nothing: the state recorded by side_effect.yml (after converge
and the idempotence run) against the state after the side effect, which re-ran kafka.yml with
log.retention.hours changed while Kafka's VerifiableProducer wrote with acks=all on the first broker."""

import itertools
import json
import pathlib
import re

import pytest
from conftest import inventory_host, inventory_hosts

testinfra_hosts = inventory_hosts("all")
KAFKA_NODES = sorted(set(inventory_hosts("kafka_controllers") + inventory_hosts("kafka_brokers")))
assert KAFKA_NODES, "the scenario inventory has no Kafka hosts"
HDFS_UNITS = {name: ["hdfs-namenode"] for name in inventory_hosts("hdfs_namenodes")}
for _name in inventory_hosts("hdfs_datanodes"):
    HDFS_UNITS.setdefault(_name, []).append("hdfs-datanode")
STORAGE_FILES = [
    "/var/lib/hdfs-name/current/VERSION",
    "/var/lib/hdfs-data/current/VERSION",
    "/var/lib/kafka-logs/meta.properties",
]
# side_effect.yml's producer: where it ran, what it wrote to, and its report (one JSON object a line).
PRODUCER_TOPIC = "mlstack.ingest.images"
PRODUCER_REPORT = "/var/tmp/molecule-producer.jsonl"


@pytest.fixture
def before(host, scenario_vars) -> dict:
    artifacts = scenario_vars("molecule_artifacts")["molecule_artifacts"]
    return json.loads(
        pathlib.Path(artifacts, f"before-side-effect-{host.backend.get_hostname()}.json").read_text()
    )


def unit_property(node, unit: str, name: str) -> str:
    return node.run(f"systemctl show {unit} -p {name} --value").stdout.strip()


@pytest.fixture(scope="module")
def restart_windows() -> list[tuple[float, float, str]]:
    """(stopped, started again, node) of each Kafka node's last restart, in wall-clock seconds, by stop time."""
    windows = []
    for name in KAFKA_NODES:
        node = inventory_host(name)
        # Monotonic microseconds (the containers share one kernel clock), moved to the wall clock.
        offset = float(node.check_output("python3 -c 'import time; print(time.time() - time.monotonic())'"))
        stopped = int(unit_property(node, "kafka", "ActiveExitTimestampMonotonic")) / 1e6 + offset
        started = int(unit_property(node, "kafka", "ActiveEnterTimestampMonotonic")) / 1e6 + offset
        windows.append((stopped, started, name))
    return sorted(windows)


@pytest.fixture(scope="module")
def producer_report() -> tuple[dict[str, float], list[dict]]:
    """(value -> time acknowledged, the failed sends) of side_effect.yml's producer."""
    report = inventory_host(KAFKA_NODES[0]).file(PRODUCER_REPORT).content_string
    events = [json.loads(line) for line in report.splitlines() if line.startswith("{")]
    acknowledged = {
        event["value"]: event["timestamp"] / 1e3
        for event in events
        if event["name"] == "producer_send_success"
    }
    return acknowledged, [event for event in events if event["name"] == "producer_send_error"]


def test_hdfs_daemons_were_not_restarted_by_the_re_converge(host, before):
    for unit in HDFS_UNITS.get(host.backend.get_hostname(), []):
        assert unit_property(host, unit, "MainPID") == before["units"][unit]["MainPID"] != "0", unit


def test_the_changed_kafka_setting_restarted_kafka(host, before):
    assert before["units"]["kafka"]["ActiveState"] == "active"
    assert unit_property(host, "kafka", "MainPID") != before["units"]["kafka"]["MainPID"]


@pytest.mark.parametrize("path", STORAGE_FILES)
def test_no_storage_was_formatted_again(host, before, path):
    if before["files"][path] is None:
        pytest.skip(f"{path} is not storage of {host.backend.get_hostname()}")
    assert host.file(path).content_string == before["files"][path]


def test_the_rolling_restart_took_one_node_at_a_time_in_inventory_order(restart_windows):
    assert [name for _, _, name in restart_windows] == KAFKA_NODES, "restarted in inventory order"
    for (_, previous_up, previous), (stopping, _, name) in itertools.pairwise(restart_windows):
        assert stopping > previous_up, f"{name} stopped before {previous} was back"


def test_the_producer_got_every_record_acknowledged_throughout_the_rolling_restart(
    producer_report, restart_windows
):
    acknowledged, failed = producer_report
    assert not failed, f"{len(failed)} records failed with acks=all, the first: {failed[0]}"
    times = sorted(acknowledged.values())
    assert times and times[0] < restart_windows[0][0], "no record acknowledged before the first restart"
    # While each node restarted, and until the next one stopped, the other two kept acknowledging.
    ends = [stopped for stopped, _, _ in restart_windows[1:]] + [float("inf")]
    for (stopped, _, name), end in zip(restart_windows, ends, strict=True):
        assert any(stopped <= t < end for t in times), f"no record acknowledged after {name} stopped"


def test_every_acknowledged_record_can_be_read_back(producer_report):
    acknowledged, _ = producer_report
    node = inventory_host(KAFKA_NODES[0])
    java_home = re.search(r"JAVA_HOME=(\S+)", unit_property(node, "kafka", "Environment")).group(1)
    bootstrap = node.check_output("grep -m1 '^advertised.listeners=' /etc/kafka/server.properties")
    bootstrap = re.search(r"BROKER://([^,\s]+)", bootstrap).group(1)
    # The consumer stops 20 s after the last record it read.
    consumed = node.run(
        f"JAVA_HOME={java_home} KAFKA_HEAP_OPTS=-Xmx256m /opt/kafka/bin/kafka-console-consumer.sh "
        f"--bootstrap-server={bootstrap} --consumer.config=/etc/kafka/admin.properties "
        f"--topic={PRODUCER_TOPIC} --from-beginning --timeout-ms=20000"
    )
    lost = set(acknowledged) - set(consumed.stdout.split())
    assert acknowledged and not lost, (
        f"{len(lost)} of {len(acknowledged)} acknowledged records are missing, e.g. {sorted(lost)[:10]}\n"
        + consumed.stderr[-2000:]
    )
