"""HDFS as playbooks/hdfs.yml left it (after converge, the idempotence run and the side effect).

The daemons are Apache Hadoop's own (the release of `make releases`), so what they report (a DataNode
holding the NameNode's clusterID, live DataNodes, a file stored with its replicas, the HDFS directories) is
what the role's units, configuration and firewall let them do.
"""

import json
import shlex

import jinja2
import pytest
from conftest import checked, inventory_host, inventory_hosts, role_defaults

NAMENODES = inventory_hosts("hdfs_namenodes")
DATANODES = inventory_hosts("hdfs_datanodes")
testinfra_hosts = sorted(set(NAMENODES + DATANODES))
assert NAMENODES and DATANODES, "the scenario inventory has no HDFS hosts"
NAME_DIR = "/var/lib/hdfs-name"
DATA_DIR = "/var/lib/hdfs-data"
# The scenario keeps the role's directories (molecule.yml does not set hdfs_directories), their owners as
# the role renders them.
DIRECTORIES = [
    {**entry, "owner": jinja2.Template(entry["owner"]).render(role_defaults("hdfs"))}
    for entry in role_defaults("hdfs")["hdfs_directories"]
]
# The durable default 3, lowered to the number of DataNodes.
REPLICATION = min(3, len(DATANODES))
# systemd's "Started <unit>" message (SD_MESSAGE_UNIT_STARTED): one per start of a unit, restarts included.
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"


def daemons_of(name: str) -> list[str]:
    return (["namenode"] if name in NAMENODES else []) + (["datanode"] if name in DATANODES else [])


def version_fields(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def hdfs(node, *args: str, stdin: str | None = None):
    """`hdfs <args>` on a node as the HDFS superuser, with the role's configuration; the result."""
    command = "HADOOP_USER_NAME=hdfs HADOOP_CONF_DIR=/etc/hadoop /opt/hadoop/bin/hdfs " + shlex.join(args)
    if stdin is not None:
        command = f"printf %s {shlex.quote(stdin)} | {command}"
    return node.run(command)


def http_get(host, url: str) -> str:
    script = (
        "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
    )
    result = host.run("python3 -c %s %s", script, url)
    assert result.rc == 0, f"GET {url} from {host.backend.get_hostname()}: {result.stderr}"
    return result.stdout


def http_json(host, url: str) -> dict:
    return json.loads(http_get(host, url))


def prometheus_values(text: str) -> dict[str, float]:
    """name -> value of the unlabelled samples of a Prometheus text exposition."""
    samples = (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    return {sample[0]: float(sample[1]) for sample in samples if "{" not in sample[0]}


@pytest.fixture(scope="module")
def namenode():
    return inventory_host(NAMENODES[0])


@pytest.fixture(scope="module")
def namenode_address(scenario_vars) -> str:
    return scenario_vars(namenode=f"hostvars['{NAMENODES[0]}']['ansible_host']")["namenode"]


@pytest.fixture(scope="module")
def directory_stats(namenode) -> dict[str, str]:
    """path -> "type owner:group mode" of every hdfs_directories entry, from one `hdfs dfs -stat`."""
    paths = [entry["path"] for entry in DIRECTORIES]
    lines = checked(hdfs(namenode, "dfs", "-stat", "%n|%F %u:%g %a", *paths)).splitlines()
    # %n is the last path component: the paths' own names are distinct in the role's list.
    by_name = dict(line.split("|", 1) for line in lines)
    return {path: by_name[path.rsplit("/", 1)[1]] for path in paths}


def test_the_hdfs_user_is_a_system_user_without_a_login_shell(host):
    user = host.user("hdfs")
    assert user.exists and user.group == "hadoop"
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000


def test_the_release_is_the_verified_tarball_behind_the_stable_link(host, scenario_vars):
    home = f"/opt/hadoop-{scenario_vars('hdfs_version')['hdfs_version']}"
    assert host.file("/opt/hadoop").linked_to == home
    assert host.file(f"{home}/bin/hdfs").mode & 0o111
    marker = host.file(f"{home}/.mlstack-release-checksum").content_string.strip()
    assert len(marker) == 128


def test_java_home_of_hadoop_env_holds_the_distribution_openjdk(host, read_file):
    java_home = next(
        line.split("=", 1)[1]
        for line in read_file("/etc/hadoop/hadoop-env.sh").splitlines()
        if line.startswith("export JAVA_HOME=")
    )
    assert host.file(f"{java_home}/bin/java").exists
    assert host.package("openjdk-17-jre-headless").is_installed


@pytest.mark.parametrize("directory", [NAME_DIR, DATA_DIR])
def test_storage_directories_belong_to_hdfs_and_are_private(host, directory):
    name = host.backend.get_hostname()
    if (directory == NAME_DIR) != (name in NAMENODES):
        pytest.skip(f"{directory} is not a storage directory of {name}")
    storage = host.file(directory)
    assert (
        storage.is_directory
        and storage.user == "hdfs"
        and storage.group == "hadoop"
        and storage.mode == 0o700
    )


def test_site_files_point_every_host_at_the_namenode_with_webhdfs_on(host, read_file, namenode_address):
    assert f"<value>hdfs://{namenode_address}:8020</value>" in read_file("/etc/hadoop/core-site.xml")
    site = read_file("/etc/hadoop/hdfs-site.xml")
    assert "<name>dfs.webhdfs.enabled</name>\n    <value>true</value>" in site
    # 2 DataNodes: the durable default 3 is lowered to 2 (with the preflight warning).
    assert f"<name>dfs.replication</name>\n    <value>{REPLICATION}</value>" in site


def test_each_host_runs_the_units_of_its_daemons(host, assert_running):
    for daemon in daemons_of(host.backend.get_hostname()):
        assert_running(f"hdfs-{daemon}")


def test_each_daemon_started_once_in_converge_idempotence_and_side_effect(host):
    for daemon in daemons_of(host.backend.get_hostname()):
        starts = host.run(
            f"journalctl MESSAGE_ID={UNIT_STARTED} UNIT=hdfs-{daemon}.service --output cat --no-pager"
        ).stdout
        assert len(starts.splitlines()) == 1, f"hdfs-{daemon} started more than once:\n{starts}"


def test_firewalld_allows_the_named_services_of_the_daemons(host):
    services = host.run("firewall-cmd --list-services").stdout.split()
    for daemon in daemons_of(host.backend.get_hostname()):
        assert f"hdfs-{daemon}" in services


def test_the_namenode_was_formatted_once_and_every_datanode_holds_its_cluster_id(host, namenode):
    if host.backend.get_hostname() not in DATANODES:
        pytest.skip("compared on each DataNode")
    namenode_version = version_fields(namenode.file(f"{NAME_DIR}/current/VERSION").content_string)
    assert namenode_version["clusterID"].startswith("CID-")
    datanode_version = version_fields(host.file(f"{DATA_DIR}/current/VERSION").content_string)
    assert datanode_version["clusterID"] == namenode_version["clusterID"]
    # One format leaves one block pool: the DataNode's is the NameNode's namespace.
    block_pools = host.run(f"ls {DATA_DIR}/current").stdout.split()
    assert [pool for pool in block_pools if pool.startswith("BP-")] == [namenode_version["blockpoolID"]]


def test_the_namenode_reports_every_datanode_live(namenode):
    report = checked(hdfs(namenode, "dfsadmin", "-report", "-live"))
    assert f"Live datanodes ({len(DATANODES)}):" in report, report
    hostnames = [
        line.split(":", 1)[1].strip() for line in report.splitlines() if line.startswith("Hostname:")
    ]
    # A DataNode reports the name its address resolves to: the container's (<prefix>-node2) or node2.
    for name in DATANODES:
        assert any(
            hostname in (name, f"{name}.") or hostname.endswith(f"-{name}") for hostname in hostnames
        ), f"{name} is not among the live DataNodes:\n{report}"


def test_a_file_put_into_hdfs_is_stored_with_the_configured_replication_and_read_back(namenode):
    path = "/mlstack/datasets/molecule-round-trip.txt"
    content = "round trip through the DataNodes\n" * 200
    checked(hdfs(namenode, "dfs", "-put", "-f", "-", path, stdin=content))
    assert checked(hdfs(namenode, "dfs", "-stat", "%r %b", path)).split() == [
        str(REPLICATION),
        str(len(content)),
    ]
    # fsck counts the replicas the DataNodes hold, not just the file's wanted replication.
    fsck = checked(hdfs(namenode, "fsck", path, "-files", "-blocks"))
    assert f"Live_repl={REPLICATION}" in fsck and "Status: HEALTHY" in fsck, fsck
    assert checked(hdfs(namenode, "dfs", "-cat", path)) == content


@pytest.mark.parametrize("entry", DIRECTORIES, ids=[entry["path"] for entry in DIRECTORIES])
def test_the_hdfs_directories_have_the_declared_owner_group_and_mode(directory_stats, entry):
    mode = str(entry.get("mode", "0755")).lstrip("0")
    assert directory_stats[entry["path"]] == f"directory {entry['owner']}:{entry['group']} {mode}"


def test_webhdfs_lists_the_directories_through_the_namenode_firewall(host, namenode_address):
    if host.backend.get_hostname() not in DATANODES:
        pytest.skip("asked from each DataNode, through the NameNode's firewall")
    listed = http_json(
        host, f"http://{namenode_address}:9870/webhdfs/v1/mlstack?op=LISTSTATUS&user.name=hdfs"
    )
    statuses = {status["pathSuffix"]: status for status in listed["FileStatuses"]["FileStatus"]}
    for entry in DIRECTORIES:
        parent, _, name = entry["path"].rpartition("/")
        if parent != "/mlstack":
            continue
        status = statuses[name]
        assert (status["type"], status["owner"], status["group"], status["permission"]) == (
            "DIRECTORY",
            entry["owner"],
            entry["group"],
            str(entry["mode"]).lstrip("0"),
        )


def test_the_namenode_jmx_exporter_serves_the_documented_metrics_to_the_datanodes(
    host, settings, namenode_address
):
    if host.backend.get_hostname() not in DATANODES:
        pytest.skip("asked from each DataNode, through the NameNode's firewall")
    wanted = settings("hdfs")
    if not wanted["hdfs_jmx_exporter"]:
        pytest.skip("hdfs_jmx_exporter is off in this scenario")
    metrics = prometheus_values(
        http_get(host, f"http://{namenode_address}:{wanted['hdfs_jmx_exporter_port']}/metrics")
    )
    # The names of docs/interfaces.md, with the values the NameNode reports.
    assert metrics["hdfs_namenode_live_datanodes"] == len(DATANODES)
    assert metrics["hdfs_namenode_dead_datanodes"] == 0
    assert metrics["hdfs_namenode_missing_blocks"] == 0
    assert (
        metrics["hdfs_namenode_capacity_total_bytes"] > metrics["hdfs_namenode_capacity_remaining_bytes"] > 0
    )
