"""The data-tier templates rendered for small and large inventories, read back with real parsers:
Hadoop's *-site.xml with xml.etree, server.properties as Java properties, the JMX exporter rules applied
to the MBeans of docs/interfaces.md the way the exporter applies them, the device plugin configuration
against the Pulumi program's. Rendering runs the role's own defaults and vars (render_templates.yml)."""

from __future__ import annotations

import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ElementTree

import pytest
import yaml

from tests.ansible.support import ROLES_DIR, ROOT, run_playbook

HERE = pathlib.Path(__file__).parent
INTERFACES = ROOT / "docs" / "interfaces.md"
SECRET = "s3cret-password-for-tests"

# name -> (groups, address)
SMALL = {
    "node1": (["hdfs_namenodes", "kafka_controllers", "kafka_brokers"], "10.0.1.1"),
    "node2": (["hdfs_datanodes", "kafka_controllers", "kafka_brokers"], "10.0.1.2"),
    "node3": (["hdfs_datanodes", "kafka_controllers", "kafka_brokers"], "10.0.1.3"),
}
LARGE = {
    "nn1": (["hdfs_namenodes", "hdfs_journalnodes", "kafka_controllers"], "10.0.2.1"),
    "nn2": (["hdfs_namenodes", "hdfs_journalnodes", "kafka_controllers"], "10.0.2.2"),
    "jn3": (["hdfs_journalnodes", "kafka_controllers"], "10.0.2.3"),
    **{f"dn{i}": (["hdfs_datanodes", "kafka_brokers"], f"10.0.3.{i}") for i in range(1, 6)},
}
SINGLE = {"solo": (["hdfs_namenodes", "hdfs_datanodes", "kafka_controllers", "kafka_brokers"], "10.0.4.1")}
LARGE_VARS = {
    "hdfs_ha": True,
    "hdfs_ha_zookeeper_quorum": ["zk1:2181", "zk2:2181", "zk3:2181"],
    "hdfs_datanode_data_dirs": ["/data/disk1/hdfs", "/data/disk2/hdfs", "/data/disk3/hdfs"],
    "hdfs_jmx_exporter": True,
    "kafka_jmx_exporter": True,
    "kafka_tls": True,
    "kafka_tls_keystore_path": "/etc/kafka/tls/node.p12",
    "kafka_tls_keystore_password": SECRET,
    "kafka_tls_truststore_path": "/etc/kafka/tls/ca.p12",
    "kafka_tls_truststore_password": SECRET,
    "kafka_sasl_scram": True,
    "kafka_sasl_users": [{"name": "broker", "password": SECRET}],
}
VARIANTS = {"small": (SMALL, {}), "large": (LARGE, LARGE_VARS), "single": (SINGLE, {})}
# Variants whose hosts Ansible reaches at a public address (ansible_host) beside the address above in
# cluster_address, as on AWS; the others set ansible_host only, the roles' fallback.
SPLIT_ADDRESSES = ("small", "large")


def public_address(address: str) -> str:
    """The SSH address of a host whose cluster address is 10.0.x.y: 198.18.x.y (never a cluster address)."""
    return "198.18." + address.split(".", 2)[2]


def render(
    tmp: pathlib.Path, hosts: dict, variables: dict, roles: list[str], split_addresses: bool = False
) -> dict[str, dict[str, str]]:
    """{host: {"<role>/<template>": text}} for every host of the inventory."""
    groups: dict[str, dict] = {}
    for name, (member_of, address) in hosts.items():
        addresses = {"ansible_host": address}
        if split_addresses:
            addresses = {"ansible_host": public_address(address), "cluster_address": address}
        for group in member_of:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = {
                **addresses,
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
            }
    # Group members in the order given (Ansible keeps the inventory file's order).
    (tmp / "inventory.yml").write_text(yaml.safe_dump({"all": {"children": groups}}, sort_keys=False))
    (tmp / "files").mkdir()
    extra = {
        "render_roles": [{"role": role, "os_vars": None, "hosts": list(hosts)} for role in roles],
        "roles_dir": str(ROLES_DIR),
        "context_dir": str(HERE / "template_context"),
        "out_dir": str(tmp / "files"),
        **variables,
    }
    result = run_playbook(
        HERE / "playbooks" / "render_templates.yml", tmp / "inventory.yml", "-e", json.dumps(extra)
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    out = {}
    for host in hosts:
        by_role = json.loads((tmp / "files" / f"{host}.json").read_text())
        out[host] = {
            f"{key.split('/')[0]}/{name}": text
            for key, texts in by_role.items()
            for name, text in texts.items()
        }
    return out


@pytest.fixture(scope="module")
def renders(tmp_path_factory) -> dict[str, dict[str, dict[str, str]]]:
    """Each variant rendered once per module, on first use."""

    class Cache(dict):
        def __missing__(self, name: str) -> dict[str, dict[str, str]]:
            hosts, variables = VARIANTS[name]
            self[name] = render(
                tmp_path_factory.mktemp(name),
                hosts,
                variables,
                ["hdfs", "kafka"],
                split_addresses=name in SPLIT_ADDRESSES,
            )
            return self[name]

    return Cache()


@pytest.fixture(params=list(VARIANTS))
def cluster(request, renders) -> tuple[str, dict, dict[str, dict[str, str]]]:
    return request.param, VARIANTS[request.param][0], renders[request.param]


def members(hosts: dict, group: str) -> list[str]:
    return [name for name, (groups, _) in hosts.items() if group in groups]


def site_properties(text: str) -> dict[str, str]:
    root = ElementTree.fromstring(text)
    assert root.tag == "configuration"
    names = [prop.findtext("name") for prop in root.iter("property")]
    assert len(names) == len(set(names)), f"duplicate properties: {names}"
    return {prop.findtext("name"): prop.findtext("value") for prop in root.iter("property")}


def java_properties(text: str) -> dict[str, str]:
    """server.properties as Java reads it (comments, key=value, no continuation lines in ours)."""
    parsed: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(("#", "!")):
            continue
        assert not line.endswith("\\"), f"line {number} continues: {line!r}"
        key, separator, value = line.partition("=")
        assert separator and re.fullmatch(r"[a-z0-9._-]+", key), f"line {number} is no key=value: {line!r}"
        assert key not in parsed, f"{key} twice"
        parsed[key] = value
    return parsed


# Broker and controller settings of Kafka 4.1 (Apache Kafka documentation, "Broker Configs") that the role
# may write, and the per-listener form of the SASL JAAS setting.
KAFKA_KEYS = {
    "process.roles", "node.id", "controller.quorum.voters", "controller.listener.names", "listeners",
    "advertised.listeners", "listener.security.protocol.map", "inter.broker.listener.name", "log.dirs",
    "num.partitions", "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor", "transaction.state.log.min.isr", "unclean.leader.election.enable",
    "auto.create.topics.enable", "log.retention.hours", "num.network.threads", "num.io.threads",
    "sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol", "ssl.keystore.type", "ssl.keystore.location",
    "ssl.keystore.password", "ssl.truststore.type", "ssl.truststore.location", "ssl.truststore.password",
    "ssl.endpoint.identification.algorithm",
}  # fmt: skip
KAFKA_LISTENER_KEY = re.compile(
    r"listener\.name\.(broker|controller)\.(ssl\.client\.auth|scram-sha-(256|512)\.sasl\.jaas\.config)"
)


@pytest.mark.parametrize("name", SPLIT_ADDRESSES)
def test_no_data_tier_file_names_an_address_ansible_alone_uses(renders, name):
    hosts = VARIANTS[name][0]
    public = [public_address(address) for _, address in hosts.values()]
    named = {
        f"{host} {template}": found
        for host, texts in renders[name].items()
        for template, text in texts.items()
        if (found := [a for a in public if re.search(rf"(?<![0-9.]){re.escape(a)}(?![0-9])", text)])
    }
    assert renders[name], "nothing rendered"
    assert named == {}, "ansible_host is the SSH address; listeners, voters and HDFS name cluster addresses"


def test_hdfs_site_files_are_wellformed_with_webhdfs_and_the_documented_ports(cluster):
    _, hosts, rendered = cluster
    for host in hosts:
        core = site_properties(rendered[host]["hdfs/core-site.xml"])
        hdfs = site_properties(rendered[host]["hdfs/hdfs-site.xml"])
        assert hdfs["dfs.webhdfs.enabled"] == "true"
        assert hdfs["dfs.datanode.address"].endswith(":9866") and hdfs["dfs.datanode.http.address"].endswith(
            ":9864"
        )
        assert core["fs.defaultFS"].startswith("hdfs://")


def test_hdfs_replication_never_exceeds_the_datanodes_and_defaults_to_three(cluster):
    _, hosts, rendered = cluster
    datanodes = len(members(hosts, "hdfs_datanodes"))
    for host in hosts:
        replication = int(site_properties(rendered[host]["hdfs/hdfs-site.xml"])["dfs.replication"])
        assert replication == min(3, datanodes), (host, replication, datanodes)


def test_hdfs_clients_find_the_namenode_or_the_ha_pair(cluster):
    name, hosts, rendered = cluster
    namenodes = members(hosts, "hdfs_namenodes")
    addresses = [hosts[n][1] for n in namenodes]
    for host in hosts:
        core = site_properties(rendered[host]["hdfs/core-site.xml"])
        hdfs = site_properties(rendered[host]["hdfs/hdfs-site.xml"])
        if name != "large":
            assert core["fs.defaultFS"] == f"hdfs://{addresses[0]}:8020"
            assert hdfs["dfs.namenode.rpc-address"] == f"{addresses[0]}:8020"
            assert hdfs["dfs.namenode.http-address"] == f"{addresses[0]}:9870"
            continue
        journal = [hosts[n][1] for n in members(hosts, "hdfs_journalnodes")]
        assert core["fs.defaultFS"] == "hdfs://mlstack"
        assert core["ha.zookeeper.quorum"] == "zk1:2181,zk2:2181,zk3:2181"
        assert hdfs["dfs.ha.namenodes.mlstack"] == "nn1,nn2"
        assert [hdfs[f"dfs.namenode.rpc-address.mlstack.nn{i}"] for i in (1, 2)] == [
            f"{a}:8020" for a in addresses
        ]
        assert (
            hdfs["dfs.namenode.shared.edits.dir"]
            == "qjournal://" + ";".join(f"{a}:8485" for a in journal) + "/mlstack"
        )
        assert hdfs["dfs.ha.automatic-failover.enabled"] == "true"
        assert (
            hdfs["dfs.datanode.data.dir"]
            == "file:///data/disk1/hdfs,file:///data/disk2/hdfs,file:///data/disk3/hdfs"
        )


def test_server_properties_hold_only_kafka_settings(cluster):
    _, hosts, rendered = cluster
    for host in members(hosts, "kafka_controllers") + members(hosts, "kafka_brokers"):
        keys = set(java_properties(rendered[host]["kafka/server.properties"]))
        unknown = {key for key in keys - KAFKA_KEYS if not KAFKA_LISTENER_KEY.fullmatch(key)}
        assert not unknown, f"{host}: not Kafka settings: {unknown}"


def test_quorum_voters_are_the_controllers_of_the_inventory_with_their_node_ids(cluster):
    _, hosts, rendered = cluster
    kafka_hosts = list(dict.fromkeys(members(hosts, "kafka_controllers") + members(hosts, "kafka_brokers")))
    properties = {h: java_properties(rendered[h]["kafka/server.properties"]) for h in kafka_hosts}
    ids = {h: properties[h]["node.id"] for h in kafka_hosts}
    assert len(set(ids.values())) == len(ids), f"node ids repeat: {ids}"
    controllers = members(hosts, "kafka_controllers")
    expected = ",".join(f"{ids[c]}@{hosts[c][1]}:9093" for c in controllers)
    assert len(controllers) % 2 == 1
    for host in kafka_hosts:
        assert properties[host]["controller.quorum.voters"] == expected, host
        roles = set(properties[host]["process.roles"].split(","))
        wanted = {"controller"} if host in controllers else set()
        assert roles == wanted | ({"broker"} if host in members(hosts, "kafka_brokers") else set())


def test_kafka_durability_is_clamped_to_the_brokers(cluster):
    _, hosts, rendered = cluster
    brokers = len(members(hosts, "kafka_brokers"))
    for host in members(hosts, "kafka_brokers"):
        properties = java_properties(rendered[host]["kafka/server.properties"])
        replication = int(properties["default.replication.factor"])
        assert replication == min(3, brokers)
        assert int(properties["min.insync.replicas"]) == max(1, min(2, replication - 1))
        assert properties["unclean.leader.election.enable"] == "false"
        assert properties["advertised.listeners"].startswith(f"BROKER://{hosts[host][1]}:9092")


def test_kafka_listeners_use_tls_and_scram_when_asked(cluster):
    name, hosts, rendered = cluster
    broker = members(hosts, "kafka_brokers")[0]
    properties = java_properties(rendered[broker]["kafka/server.properties"])
    admin = java_properties(rendered[broker]["kafka/admin.properties"])
    if name != "large":
        assert properties["listener.security.protocol.map"] == "BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
        assert admin == {"security.protocol": "PLAINTEXT"}
        return
    assert properties["listener.security.protocol.map"] == "BROKER:SASL_SSL,CONTROLLER:SSL"
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    jaas = properties["listener.name.broker.scram-sha-512.sasl.jaas.config"]
    assert jaas.startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
    ) and jaas.endswith(";")
    assert admin["security.protocol"] == "SASL_SSL" and admin["sasl.mechanism"] == "SCRAM-SHA-512"


def test_units_run_as_the_service_user_with_java_from_the_distribution(cluster):
    _, hosts, rendered = cluster
    host = members(hosts, "kafka_brokers")[0]
    kafka = rendered[host]["kafka/kafka.service"]
    assert (
        "User=kafka" in kafka
        and "ExecStart=/opt/kafka/bin/kafka-server-start.sh /etc/kafka/server.properties" in kafka
    )
    hdfs = rendered[host]["hdfs/hdfs.service"]
    assert "User=hdfs" in hdfs and "Environment=HADOOP_CONF_DIR=/etc/hadoop" in hdfs
    assert "export JAVA_HOME=/usr/lib/jvm/" in rendered[host]["hdfs/hadoop-env.sh"]


# --- JMX exporter rules -------------------------------------------------------------------------------


def documented_jmx_metrics() -> dict[str, tuple[str, str]]:
    """metric -> (MBean object name, attribute) from the interfaces table ("same bean" rows resolved)."""
    section = INTERFACES.read_text().split("| metric | MBean attribute | JMX exporter rule |", 1)[1]
    rows = re.findall(r"^\| `([a-z_]+)` \| (.+?) \|", section, re.M)
    metrics: dict[str, tuple[str, str]] = {}
    bean = ""
    for metric, source in rows:
        named = re.match(r"`([^`]+)` `(\w+)`", source)
        if named:
            bean, attribute = named.groups()
        else:
            attribute = re.match(r"same bean, `(\w+)`", source).group(1)
        metrics[metric] = (bean, attribute)
    assert len(metrics) >= 9, metrics
    return metrics


def exporter_name(config: dict, object_name: str, attribute: str) -> str | None:
    """The metric name the Prometheus JMX exporter gives a bean attribute, following its documented
    algorithm: "domain<key=value, ...><>attribute: value" matched against each rule's pattern (first match
    wins, unanchored), $n replaced by the groups, invalid characters replaced by "_", lowercased if
    configured. test_jmx_exporter.py checks the rules against the real exporter in real daemons."""
    domain, _, keys = object_name.partition(":")
    subject = f"{domain}<{', '.join(keys.split(','))}><>{attribute}: 0"
    for rule in config["rules"]:
        match = re.fullmatch(f"^.*(?:{rule['pattern']}).*$", subject)
        if match:
            name = re.sub(r"\$(\d+)", r"\\g<\1>", rule["name"])
            name = match.expand(name)
            name = re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:_]", "_", name))
            return name.lower() if config.get("lowercaseOutputName") else name
    return None


@pytest.fixture
def jmx_configs(renders) -> dict[str, dict]:
    """The exporter configurations of the large inventory (both exporters on): NameNode nn1, broker dn1."""
    rendered = renders["large"]
    return {
        "hdfs": yaml.safe_load(rendered["nn1"]["hdfs/jmx-exporter.yml"]),
        "kafka": yaml.safe_load(rendered["dn1"]["kafka/jmx-exporter.yml"]),
    }


@pytest.mark.parametrize("metric", sorted(documented_jmx_metrics()))
def test_jmx_exporter_rules_give_the_documented_metric_name(jmx_configs, metric):
    bean, attribute = documented_jmx_metrics()[metric]
    config = jmx_configs["kafka" if bean.startswith("kafka.") else "hdfs"]
    assert config["lowercaseOutputName"] is True
    assert exporter_name(config, bean, attribute) == metric


def test_jmx_exporter_rules_export_nothing_undocumented_from_the_namenode(jmx_configs):
    assert (
        exporter_name(jmx_configs["hdfs"], "Hadoop:service=NameNode,name=FSNamesystem", "BlocksTotal") is None
    )
    assert (
        exporter_name(jmx_configs["kafka"], "kafka.network:type=RequestMetrics,name=RequestsPerSec", "Value")
        is None
    )
    # An attribute whose name starts with a documented one is another attribute (CapacityTotalGB).
    assert (
        exporter_name(jmx_configs["hdfs"], "Hadoop:service=NameNode,name=FSNamesystem", "CapacityTotalGB")
        is None
    )


# --- NVIDIA device plugin -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    # The defaults (none, none) render in test_templates.py; these are the two other shapes.
    ("sharing", "replicas", "mig"),
    [("time-slicing", 4, "single"), ("none", 2, "mixed")],
)
def test_device_plugin_configuration_equals_the_pulumi_programs(tmp_path, sharing, replicas, mig):
    from infra.specs import gpu

    variables = {
        "nvidia_gpu_sharing_strategy": sharing,
        "nvidia_gpu_time_slicing_replicas": replicas,
        "nvidia_gpu_mig_strategy": mig,
    }
    hosts = {"gpu1": (["gpu_nodes"], "10.0.5.1")}
    text = render(tmp_path, hosts, variables, ["nvidia_gpu"])["gpu1"]["nvidia_gpu/device-plugin-config.yaml"]
    assert yaml.safe_load(text) == yaml.safe_load(gpu.device_plugin_config(sharing, replicas, mig))
