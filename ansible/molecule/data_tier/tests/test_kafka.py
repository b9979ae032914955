"""Kafka as playbooks/kafka.yml left it (after converge, the idempotence run and the side effect).

The nodes run the fake_kafka_release test double: it starts only on storage formatted for its node and
cluster, shares topic metadata between the voters of controller.quorum.voters over the controller port,
and answers the admin commands over the broker port, so what it reports is what the role's files, units
and firewall let it do.
"""

import json
import pathlib
import re

import pytest
from conftest import inventory_host, inventory_hosts, probe_ports

# The role numbers the nodes from 1 in inventory order (node1, node2, node3).
NODES = sorted(set(inventory_hosts("kafka_controllers") + inventory_hosts("kafka_brokers")))
testinfra_hosts = NODES
assert len(NODES) == 3, f"the scenario has 3 combined Kafka nodes, the inventory {NODES}"
LOG_DIR = "/var/lib/kafka-logs"
TOPIC_LINE = re.compile(
    r"(?m)^Topic:\s*(\S+)\s+TopicId:\s*\S+\s+PartitionCount:\s*(\d+)\s+ReplicationFactor:\s*(\d+)\s+Configs:[ \t]*(\S*)"
)


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


@pytest.fixture
def server_properties(read_file) -> dict[str, str]:
    return properties(read_file("/etc/kafka/server.properties"))


@pytest.fixture
def addresses(scenario_vars) -> dict[str, str]:
    return scenario_vars(**{name: f"hostvars['{name}']['ansible_host']" for name in NODES})


def kafka_admin(host, script: str, *args: str) -> str:
    java_home = host.run("systemctl show kafka -p Environment --value").stdout
    java_home = re.search(r"JAVA_HOME=(\S+)", java_home).group(1)
    result = host.run(f"JAVA_HOME={java_home} /opt/kafka/bin/{script} " + " ".join(args))
    assert result.rc == 0, result.stderr
    return result.stdout


def test_the_kafka_user_is_a_system_user_without_a_login_shell(host):
    user = host.user("kafka")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.uid < 1000


def test_the_release_is_the_verified_tarball_behind_the_stable_link(host):
    assert host.file("/opt/kafka").linked_to == "/opt/kafka_2.13-4.1.0"
    assert len(host.file("/opt/kafka_2.13-4.1.0/.mlstack-release-checksum").content_string.strip()) == 128


def test_server_properties_make_every_node_a_combined_voter_with_its_own_id(
    host, server_properties, addresses
):
    name = host.backend.get_hostname()
    assert server_properties["process.roles"] == "broker,controller"
    assert server_properties["node.id"] == str(NODES.index(name) + 1)
    voters = ",".join(f"{index}@{addresses[node]}:9093" for index, node in enumerate(NODES, start=1))
    assert server_properties["controller.quorum.voters"] == voters
    # 3 brokers: the durable defaults hold without clamping.
    assert (server_properties["default.replication.factor"], server_properties["min.insync.replicas"]) == (
        "3",
        "2",
    )


def test_server_properties_are_readable_by_the_kafka_group_only(host):
    config = host.file("/etc/kafka/server.properties")
    assert (config.user, config.group, config.mode) == ("root", "kafka", 0o640)
    assert host.file("/etc/kafka/admin.properties").mode == 0o600


def test_the_side_effect_setting_reached_every_node(server_properties):
    assert server_properties["log.retention.hours"] == "72"


def test_the_storage_is_formatted_for_this_node_and_the_stored_cluster_id(host, scenario_vars):
    artifacts = scenario_vars("molecule_artifacts")["molecule_artifacts"]
    cluster_id = pathlib.Path(artifacts, "kafka-cluster-id").read_text().strip()
    meta = properties(host.file(f"{LOG_DIR}/meta.properties").content_string)
    assert meta["cluster.id"] == cluster_id and len(cluster_id) == 22
    assert meta["node.id"] == str(NODES.index(host.backend.get_hostname()) + 1)
    assert host.file(LOG_DIR).user == "kafka" and host.file(LOG_DIR).mode == 0o700


def test_the_storage_was_formatted_once_before_kafka_first_started(host):
    # Every start of the node logs its cluster id: the same one each time, and the format is older than the
    # first start (nothing re-formatted it in the idempotence run or the side effect).
    journal = host.run(
        "journalctl --unit kafka --grep 'Kafka Server started' --output json --no-pager"
    ).stdout
    starts = [json.loads(line) for line in journal.splitlines()]
    assert starts, "kafka never logged a start"
    cluster_id = properties(host.file(f"{LOG_DIR}/meta.properties").content_string)["cluster.id"]
    assert all(f"cluster {cluster_id})" in start["MESSAGE"] for start in starts), journal
    formatted_us = host.file(f"{LOG_DIR}/meta.properties").mtime.timestamp() * 1e6
    assert formatted_us < int(starts[0]["__REALTIME_TIMESTAMP"])


def test_kafka_runs_and_listens_on_the_broker_and_controller_ports(host, assert_running):
    assert_running("kafka")
    assert host.socket("tcp://0.0.0.0:9092").is_listening
    assert host.socket("tcp://0.0.0.0:9093").is_listening


def test_the_other_nodes_reach_both_listeners_through_the_firewall(host, addresses):
    services = host.run("firewall-cmd --list-services").stdout.split()
    assert "kafka-broker" in services and "kafka-controller" in services
    name = host.backend.get_hostname()
    targets = [(addresses[other], port) for other in NODES if other != name for port in (9092, 9093)]
    assert probe_ports(host, targets) == {}


def test_the_declared_topics_exist_on_every_node_with_the_cluster_replication(host):
    described = kafka_admin(host, "kafka-topics.sh", "--bootstrap-server", "localhost:9092", "--describe")
    topics = {
        name: (int(partitions), int(factor), configs)
        for name, partitions, factor, configs in TOPIC_LINE.findall(described)
    }
    assert topics == {
        "mlstack.ingest.images": (6, 3, "retention.ms=604800000"),
        "mlstack.inference.requests": (12, 3, "retention.ms=86400000"),
        "mlstack.inference.results": (12, 3, "retention.ms=86400000"),
        "mlstack.inference.dlq": (3, 3, "retention.ms=1209600000"),
    }


def test_no_partition_is_under_replicated(host):
    if host.backend.get_hostname() != NODES[0]:
        pytest.skip("asked once, of the first broker")
    under = kafka_admin(
        inventory_host(NODES[0]),
        "kafka-topics.sh",
        "--bootstrap-server",
        "localhost:9092",
        "--describe",
        "--under-replicated-partitions",
    )
    assert under.strip() == ""
