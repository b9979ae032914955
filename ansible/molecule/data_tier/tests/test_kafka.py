"""Kafka as playbooks/kafka.yml left it (after converge, the idempotence run and the side effect).

The nodes run Apache Kafka itself (the release of `make releases`) in KRaft mode, controller and broker
together, with SASL/SCRAM on the broker listener: what the quorum, the topics and the clients report is
what the role's storage format, files, units and firewall let Kafka do.
"""

import pathlib
import re
import shlex
import uuid

import pytest
from conftest import checked, inventory_host, inventory_hosts, probe_ports, role_defaults

# The role numbers the nodes from 1 in inventory order (node1, node2, node3).
NODES = sorted(set(inventory_hosts("kafka_controllers") + inventory_hosts("kafka_brokers")))
testinfra_hosts = NODES
assert len(NODES) == 3, f"the scenario has 3 combined Kafka nodes, the inventory {NODES}"
LOG_DIR = "/var/lib/kafka-logs"
ADMIN_CONFIG = "/etc/kafka/admin.properties"
# Written by prepare.yml: the tests' SCRAM user (kafka_sasl_users[1]), and the same with a wrong password.
CLIENT_CONFIG = "/root/scram-producer.properties"
WRONG_PASSWORD_CONFIG = "/root/scram-wrong-password.properties"
# The scenario keeps the role's topics (molecule.yml does not set kafka_topics).
TOPICS = role_defaults("kafka")["kafka_topics"]
TOPIC_LINE = re.compile(
    r"(?m)^Topic:\s*(\S+)\s+TopicId:\s*\S+\s+PartitionCount:\s*(\d+)\s+ReplicationFactor:\s*(\d+)\s+Configs:[ \t]*(\S*)"
)
# 3 brokers: the durable defaults hold without clamping.
REPLICATION, MIN_INSYNC = 3, 2
# systemd's "Started <unit>" message (SD_MESSAGE_UNIT_STARTED): one per start of a unit, restarts included.
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def kafka_tool(node, script: str, *args: str, stdin: str | None = None):
    """/opt/kafka/bin/<script> <args> on a node as root, with the unit's Java and a small heap; the result."""
    environment = node.run("systemctl show kafka -p Environment --value").stdout
    java_home = re.search(r"JAVA_HOME=(\S+)", environment).group(1)
    command = f"JAVA_HOME={java_home} KAFKA_HEAP_OPTS=-Xmx128m /opt/kafka/bin/{script} " + shlex.join(args)
    if stdin is not None:
        command = f"printf %s {shlex.quote(stdin)} | {command}"
    return node.run(command)


def kafka_topics(node, addresses: dict[str, str], config: str, *args: str):
    """kafka-topics.sh ARGS on ``node`` against the first node's broker listener, as the client ``config``."""
    bootstrap = f"--bootstrap-server={addresses[NODES[0]]}:9092"
    return kafka_tool(node, "kafka-topics.sh", bootstrap, f"--command-config={config}", *args)


@pytest.fixture
def server_properties(read_file) -> dict[str, str]:
    return properties(read_file("/etc/kafka/server.properties"))


@pytest.fixture(scope="module")
def addresses(scenario_vars) -> dict[str, str]:
    return scenario_vars(**{name: f"hostvars['{name}']['ansible_host']" for name in NODES})


@pytest.fixture(scope="module")
def first_node():
    return inventory_host(NODES[0])


@pytest.fixture(scope="module")
def described_topics(first_node, addresses) -> dict[str, tuple[int, int, dict[str, str]]]:
    """name -> (partitions, replication factor, topic settings) from one kafka-topics.sh --describe."""
    described = checked(kafka_topics(first_node, addresses, ADMIN_CONFIG, "--describe"))
    return {
        name: (int(partitions), int(factor), dict(item.split("=", 1) for item in configs.split(",") if item))
        for name, partitions, factor, configs in TOPIC_LINE.findall(described)
    }


@pytest.fixture(scope="module")
def effective_topic_settings(first_node, addresses) -> dict[str, dict[str, str]]:
    """topic -> every effective setting (topic, broker and default), from one kafka-configs.sh --describe --all."""
    described = checked(
        kafka_tool(
            first_node,
            "kafka-configs.sh",
            f"--bootstrap-server={addresses[NODES[0]]}:9092",
            f"--command-config={ADMIN_CONFIG}",
            "--describe",
            "--entity-type=topics",
            "--all",
        )
    )
    settings: dict[str, dict[str, str]] = {}
    topic = None
    for line in described.splitlines():
        if header := re.match(r"All configs for topic (\S+) are:", line):
            topic = header.group(1)
            settings[topic] = {}
        elif topic and (entry := re.match(r"\s+([\w.]+)=(\S*)", line)):
            settings[topic][entry.group(1)] = entry.group(2)
    return settings


def test_the_kafka_user_is_a_system_user_without_a_login_shell(host):
    user = host.user("kafka")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.uid < 1000


def test_the_release_is_the_verified_tarball_behind_the_stable_link(host, scenario_vars):
    versions = scenario_vars("kafka_scala_version", "kafka_version")
    home = f"/opt/kafka_{versions['kafka_scala_version']}-{versions['kafka_version']}"
    assert host.file("/opt/kafka").linked_to == home
    assert len(host.file(f"{home}/.mlstack-release-checksum").content_string.strip()) == 128


def test_server_properties_make_every_node_a_combined_voter_with_its_own_id(
    host, server_properties, addresses
):
    name = host.backend.get_hostname()
    assert server_properties["process.roles"] == "broker,controller"
    assert server_properties["node.id"] == str(NODES.index(name) + 1)
    voters = ",".join(f"{index}@{addresses[node]}:9093" for index, node in enumerate(NODES, start=1))
    assert server_properties["controller.quorum.voters"] == voters
    assert (server_properties["default.replication.factor"], server_properties["min.insync.replicas"]) == (
        str(REPLICATION),
        str(MIN_INSYNC),
    )
    assert server_properties["listener.security.protocol.map"] == "BROKER:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"


def test_server_properties_are_readable_by_the_kafka_group_only(host):
    config = host.file("/etc/kafka/server.properties")
    assert (config.user, config.group, config.mode) == ("root", "kafka", 0o640)
    assert host.file(ADMIN_CONFIG).mode == 0o600


def test_the_side_effect_setting_reached_every_node(server_properties):
    assert server_properties["log.retention.hours"] == "72"


def test_the_storage_is_formatted_for_this_node_and_the_stored_cluster_id(host, scenario_vars):
    artifacts = scenario_vars("molecule_artifacts")["molecule_artifacts"]
    cluster_id = pathlib.Path(artifacts, "kafka-cluster-id").read_text().strip()
    meta = properties(host.file(f"{LOG_DIR}/meta.properties").content_string)
    assert meta["cluster.id"] == cluster_id and len(cluster_id) == 22
    assert meta["node.id"] == str(NODES.index(host.backend.get_hostname()) + 1)
    assert host.file(LOG_DIR).user == "kafka" and host.file(LOG_DIR).mode == 0o700


def test_kafka_started_at_converge_and_once_more_in_the_rolling_restart(host):
    # Not restarted by the idempotence run, nor twice by the side effect (test_restarts.py: which restart).
    starts = host.run(
        f"journalctl MESSAGE_ID={UNIT_STARTED} UNIT=kafka.service --output cat --no-pager"
    ).stdout
    assert len(starts.splitlines()) == 2, starts


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


def test_each_node_sees_one_kraft_quorum_of_the_three_voters_with_a_leader(host, addresses):
    # Asked through this node's own broker listener.
    status = checked(
        kafka_tool(
            host,
            "kafka-metadata-quorum.sh",
            f"--bootstrap-server={addresses[host.backend.get_hostname()]}:9092",
            f"--command-config={ADMIN_CONFIG}",
            "describe",
            "--status",
        )
    )
    fields = dict(re.findall(r"(?m)^(\w+):\s*(.*)$", status))
    voters = fields["CurrentVoters"]
    # [1,2,3] in older releases, [{"id": 1, ...}, ...] since directory ids.
    ids = sorted(int(i) for i in (re.findall(r'"id":\s*(\d+)', voters) or re.findall(r"\d+", voters)))
    assert ids == [1, 2, 3], status
    assert int(fields["LeaderId"]) in ids, status


@pytest.mark.parametrize("topic", TOPICS, ids=[topic["name"] for topic in TOPICS])
def test_the_declared_topic_exists_with_its_partitions_replication_and_settings(
    described_topics, effective_topic_settings, topic
):
    partitions, factor, configs = described_topics[topic["name"]]
    assert (partitions, factor) == (topic["partitions"], topic.get("replication_factor", REPLICATION))
    for key, value in topic.get("config", {}).items():
        assert configs.get(key) == str(value), configs
    assert effective_topic_settings[topic["name"]]["min.insync.replicas"] == str(MIN_INSYNC)


def test_no_partition_is_under_replicated(first_node, addresses):
    under = checked(
        kafka_topics(first_node, addresses, ADMIN_CONFIG, "--describe", "--under-replicated-partitions")
    )
    assert under.strip() == ""


def test_a_scram_user_produces_with_acks_all_and_reads_the_record_back(first_node, addresses):
    bootstrap = ",".join(f"{addresses[node]}:9092" for node in NODES)
    record = f"molecule-scram-{uuid.uuid4().hex}"
    checked(
        kafka_tool(
            first_node,
            "kafka-console-producer.sh",
            f"--bootstrap-server={bootstrap}",
            f"--producer.config={CLIENT_CONFIG}",
            "--producer-property=acks=all",
            "--topic=mlstack.inference.requests",
            stdin=record + "\n",
        )
    )
    # The consumer stops 20 s after the last record it read.
    consumed = kafka_tool(
        first_node,
        "kafka-console-consumer.sh",
        f"--bootstrap-server={bootstrap}",
        f"--consumer.config={CLIENT_CONFIG}",
        "--topic=mlstack.inference.requests",
        "--from-beginning",
        "--timeout-ms=20000",
    )
    assert record in consumed.stdout.splitlines(), consumed.stderr[-3000:]


def test_a_wrong_scram_password_is_refused(first_node, addresses):
    result = kafka_topics(first_node, addresses, WRONG_PASSWORD_CONFIG, "--list")
    assert result.rc != 0
    assert "Authentication failed" in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_jmx_exporter_serves_the_documented_metrics_to_another_node(host, settings, addresses):
    wanted = settings("kafka")
    if not wanted["kafka_jmx_exporter"]:
        pytest.skip("kafka_jmx_exporter is off in this scenario")
    name = host.backend.get_hostname()
    url = f"http://{addresses[name]}:{wanted['kafka_jmx_exporter_port']}/metrics"
    script = (
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
    )
    other = inventory_host(next(node for node in NODES if node != name))
    result = other.run("python3 -c %s %s", script, url)
    assert result.rc == 0, f"GET {url}: {result.stderr}"
    samples = (line.split() for line in result.stdout.splitlines() if line and not line.startswith("#"))
    metrics = {sample[0]: float(sample[1]) for sample in samples if "{" not in sample[0]}
    # The names of docs/interfaces.md, with the values of a healthy cluster.
    assert metrics["kafka_server_replicamanager_underreplicatedpartitions"] == 0
    assert metrics["kafka_controller_kafkacontroller_offlinepartitionscount"] == 0
