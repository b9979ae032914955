"""The Prometheus JMX exporter agent that the kafka and hdfs roles run by default: the jar `make releases`
resolves from Maven Central (ansible/releases/jmx-exporter/), the SHA-256 both roles pin for it, their
preflight refusing any other jar, and their rules (templates/jmx-exporter.yml.j2, rendered as the roles
render them) serving every Kafka and HDFS metric name the dashboards read, from a real Kafka node and a
real NameNode with the agent in their JVMs."""

from __future__ import annotations

import contextlib
import hashlib
import pathlib
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from dashboards import catalog, contract
from tests.ansible.support import ROLES_DIR, assert_stopped_with, load_yaml
from tests.conftest import pick_free_port
from tests.support.hadoop_release import HdfsCluster
from tests.support.jmx_exporter import agent, rendered_configs, verified_jar
from tests.support.kafka_release import KafkaNode
from tests.support.releases import HADOOP, JMX_EXPORTER, KAFKA, ROOT, ReleaseMissing, required

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("jmx_exporter")]

ROLES = ("kafka", "hdfs")
# The committed lists of the names each exporter must serve (dashboards/exporters/<list>.txt).
EXPORTER_LISTS = {"kafka": "kafka-jmx", "hdfs": "hdfs-jmx"}
GENERATED = ROOT / "dashboards" / "generated"


@pytest.fixture(scope="module")
def jar() -> pathlib.Path:
    try:
        return verified_jar()
    except ReleaseMissing as missing:
        pytest.fail(str(missing), pytrace=False)


def test_the_sha256_file_beside_the_jar_is_one_sha256sum_checks(jar):
    text = (jar.parent / f"{jar.name}.sha256").read_text()
    assert re.fullmatch(rf"[0-9a-f]{{64}}  {re.escape(jar.name)}\n", text)
    checked = subprocess.run(
        ["sha256sum", "--check", "--strict", f"{jar.name}.sha256"],
        cwd=jar.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def defaults(role: str) -> dict:
    return load_yaml(ROLES_DIR / role / "defaults" / "main.yml")


@pytest.mark.parametrize("role", ROLES)
def test_the_role_runs_the_exporter_by_default_pinned_to_the_jar_make_releases_builds(role, jar):
    values = defaults(role)
    assert values[f"{role}_jmx_exporter"] is True
    assert values[f"{role}_jmx_exporter_version"] == JMX_EXPORTER.version, (
        f"{role}_jmx_exporter_version and <jmx.exporter.version> of {JMX_EXPORTER.pom.relative_to(ROOT)} differ"
    )
    assert values[f"{role}_jmx_exporter_sha256"] == hashlib.sha256(jar.read_bytes()).hexdigest(), (
        f"{role}_jmx_exporter_sha256 is not the SHA-256 of {jar.name} as Maven Central serves it"
    )


# --- preflight ------------------------------------------------------------------------------------------


def role_pins() -> dict[str, str]:
    """The roles' own pins (their defaults), over the stand-in's that test_data_tier_preflight's inventory sets."""
    return {f"{role}_jmx_exporter_sha256": defaults(role)[f"{role}_jmx_exporter_sha256"] for role in ROLES}


def airgap_with_the_releases(tmp_path: pathlib.Path, jar: pathlib.Path) -> pathlib.Path:
    """An air-gap directory with stand-in Kafka and Hadoop tarballs (test_data_tier_preflight.py's) and a
    copy of the jar (the role does not follow links)."""
    from tests.ansible import test_data_tier_preflight as preflight

    airgap = tmp_path / "airgap"
    airgap.mkdir()
    for name, top in ((preflight.HADOOP, preflight.HADOOP_TOP), (preflight.KAFKA, preflight.KAFKA_TOP)):
        data = preflight.tarball(top)
        (airgap / name).write_bytes(data)
        (airgap / f"{name}.sha512").write_text(f"{hashlib.sha512(data).hexdigest()}  {name}\n")
    shutil.copyfile(jar, airgap / jar.name)
    for disk in ("disk1", "disk2"):
        (tmp_path / "data" / disk).mkdir(parents=True)
    return airgap


def test_preflight_accepts_the_built_jar_with_the_pinned_sha256(jar, tmp_path):
    from tests.ansible import test_data_tier_preflight as preflight

    airgap = airgap_with_the_releases(tmp_path, jar)
    document = preflight.inventory(tmp_path, airgap, tmp_path / "data", preflight.SMALL, **role_pins())
    outcome = preflight.run_preflight(tmp_path, document, tmp_path / "facts")
    assert outcome.returncode == 0, outcome.failed or outcome.stderr[-3000:]


@pytest.mark.parametrize("role", ROLES)
def test_preflight_refuses_a_jar_whose_sha256_is_not_the_pinned_one_before_any_change(role, jar, tmp_path):
    """The other role's exporter is off, so that this role's check is the one that stops the run."""
    from tests.ansible import test_data_tier_preflight as preflight

    airgap = airgap_with_the_releases(tmp_path, jar)
    with (airgap / jar.name).open("ab") as tampered:
        tampered.write(b"tampered")
    actual = hashlib.sha256((airgap / jar.name).read_bytes()).hexdigest()
    watched = [tmp_path / "data", airgap]
    before = {path: path.stat().st_mtime_ns for top in watched for path in top.rglob("*")}
    (other,) = set(ROLES) - {role}
    variables = {**role_pins(), f"{other}_jmx_exporter": False}
    document = preflight.inventory(tmp_path, airgap, tmp_path / "data", preflight.SMALL, **variables)
    outcome = preflight.run_preflight(tmp_path, document, tmp_path / "facts")
    assert_stopped_with(
        outcome,
        f"Checksum mismatch: {airgap}/{jar.name} has SHA256 {actual}",
        f"{role}_jmx_exporter_sha256 pins {defaults(role)[f'{role}_jmx_exporter_sha256']}",
    )
    after = {path: path.stat().st_mtime_ns for top in watched for path in top.rglob("*")}
    assert after == before, "preflight changed the disks or the air-gap directory"
    assert not (tmp_path / "kafka-cluster-id").exists(), "preflight wrote the cluster id"


# --- the rules on the real daemons ----------------------------------------------------------------------


def dashboard_names(exporter_list: str) -> set[str]:
    """The names of ``exporter_list`` that the generated dashboards and alert rules read."""
    expressions = [
        e
        for path in sorted((GENERATED / "grafana").glob("*.json"))
        for e in contract.dashboard_expressions(path)
    ]
    expressions += [
        e
        for path in sorted((GENERATED / "prometheus").glob("*.yaml"))
        for e in contract.rule_expressions(path)
    ]
    read = set().union(*(contract.metric_names(e) for e in expressions))
    return read & catalog.exporter_lists()[exporter_list]


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, str]:
    return rendered_configs(tmp_path_factory.mktemp("render"), ROLES)


def samples(url: str) -> dict[str, list[tuple[str, float]]]:
    """{name: [(labels, value)]} of the samples served at ``url`` (the text format, comments left out)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode("utf-8")
    found: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})? (\S+)", line)
        if match:
            found.setdefault(match[1], []).append((match[2] or "", float(match[3])))
    return found


def scrape_until(url: str, ready, timeout_s: float = 90) -> dict[str, list[tuple[str, float]]]:
    """The samples served at ``url`` once ``ready(samples)`` holds (some beans appear, and a DataNode's
    capacity arrives, a moment after the daemon answers), or the last ones when ``timeout_s`` ran out."""
    deadline = time.monotonic() + timeout_s
    served: dict[str, list[tuple[str, float]]] = {}
    while True:
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            served = samples(url)
        if ready(served) or time.monotonic() > deadline:
            return served
        time.sleep(1)


def assert_one_series_each(served: dict[str, list[tuple[str, float]]], wanted: set[str], prefix: str) -> None:
    """Each name is served as one series without labels: the queries divide and compare them by ``instance``
    alone (docs/interfaces.md), which a second series of the same name (an ``_objectname`` label that the
    exporter adds when two attributes give one name) would break."""
    missing = sorted(wanted - served.keys())
    assert not missing, f"not served: {missing}; served: {sorted(n for n in served if n.startswith(prefix))}"
    several = {
        name: served[name] for name in sorted(wanted) if [labels for labels, _ in served[name]] != [""]
    }
    assert not several, f"not one series without labels: {several}"


@pytest.fixture(scope="module")
def kafka_home(tmp_path_factory) -> pathlib.Path:
    return required(KAFKA, tmp_path_factory.mktemp("kafka-release"))


@pytest.fixture(scope="module")
def hadoop_home(tmp_path_factory) -> pathlib.Path:
    return required(HADOOP, tmp_path_factory.mktemp("hadoop-release"))


def test_a_real_kafka_node_serves_every_kafka_name_the_dashboards_read(jar, configs, kafka_home, tmp_path):
    config = tmp_path / "jmx-exporter.yml"
    config.write_text(configs["kafka"])
    port = pick_free_port()
    wanted = catalog.exporter_lists()[EXPORTER_LISTS["kafka"]]
    assert dashboard_names(EXPORTER_LISTS["kafka"]) == wanted, "the list names what the dashboards read"
    with KafkaNode.running(kafka_home, tmp_path / "node", jvm_opts=agent(jar, port, config)) as node:
        node.create_topics(["mlstack.jmx"], partitions=2)
        served = scrape_until(f"http://127.0.0.1:{port}/metrics", lambda s: wanted <= s.keys())
    assert_one_series_each(served, wanted, "kafka_")
    # One node, one replica of each partition, all online.
    assert served["kafka_server_replicamanager_underreplicatedpartitions"][0][1] == 0
    assert served["kafka_controller_kafkacontroller_offlinepartitionscount"][0][1] == 0


def test_a_real_namenode_serves_every_hdfs_name_the_dashboards_read(jar, configs, hadoop_home, tmp_path):
    """The dashboards read only NameNode beans (FSNamesystem, FSNamesystemState), so the DataNodes run no
    agent. Once the DataNode has reported its disk, the free-space ratio of HdfsCapacityLow is a number."""
    config = tmp_path / "jmx-exporter.yml"
    config.write_text(configs["hdfs"])
    port = pick_free_port()
    wanted = catalog.exporter_lists()[EXPORTER_LISTS["hdfs"]]
    assert dashboard_names(EXPORTER_LISTS["hdfs"]) == wanted, "the list names what the dashboards read"

    def ready(served) -> bool:
        return wanted <= served.keys() and all(
            value > 0 for _, value in served["hdfs_namenode_capacity_total_bytes"]
        )

    with HdfsCluster.running(hadoop_home, tmp_path / "hdfs", namenode_jvm_opts=agent(jar, port, config)):
        served = scrape_until(f"http://127.0.0.1:{port}/metrics", ready)
    assert_one_series_each(served, wanted, "hdfs_")
    value = {name: served[name][0][1] for name in wanted}
    assert value["hdfs_namenode_live_datanodes"] == 1 and value["hdfs_namenode_dead_datanodes"] == 0
    assert value["hdfs_namenode_missing_blocks"] == 0
    assert (
        0 < value["hdfs_namenode_capacity_remaining_bytes"] / value["hdfs_namenode_capacity_total_bytes"] <= 1
    ), value
