"""HDFS as playbooks/hdfs.yml left it (after converge, the idempotence run and the side effect).

The daemons are the fake_hadoop_release test double: what it reports (a DataNode holding the NameNode's
clusterID, live DataNodes, HDFS directories) is what the role made it do, through the units, the
configuration and the firewall the role wrote.
"""

import json

import pytest
from conftest import inventory_host, inventory_hosts

NAMENODES = inventory_hosts("hdfs_namenodes")
DATANODES = inventory_hosts("hdfs_datanodes")
testinfra_hosts = sorted(set(NAMENODES + DATANODES))
assert NAMENODES and DATANODES, "the scenario inventory has no HDFS hosts"
NAME_DIR = "/var/lib/hdfs-name"
DATA_DIR = "/var/lib/hdfs-data"


def daemons_of(name: str) -> list[str]:
    return (["namenode"] if name in NAMENODES else []) + (["datanode"] if name in DATANODES else [])


def version_fields(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def http_json(host, url: str) -> dict:
    script = "import json, sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
    result = host.run("python3 -c %s %s", script, url)
    assert result.rc == 0, f"GET {url} from {host.backend.get_hostname()}: {result.stderr}"
    return json.loads(result.stdout)


def test_the_hdfs_user_is_a_system_user_without_a_login_shell(host):
    user = host.user("hdfs")
    assert user.exists and user.group == "hadoop"
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000


def test_the_release_is_the_verified_tarball_behind_the_stable_link(host):
    assert host.file("/opt/hadoop").linked_to == "/opt/hadoop-3.4.1"
    assert host.file("/opt/hadoop-3.4.1/bin/hdfs").mode & 0o111
    marker = host.file("/opt/hadoop-3.4.1/.mlstack-release-checksum").content_string.strip()
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


def test_site_files_point_every_host_at_the_namenode_with_webhdfs_on(host, read_file, scenario_vars):
    address = scenario_vars(namenode=f"hostvars['{NAMENODES[0]}']['ansible_host']")["namenode"]
    assert f"<value>hdfs://{address}:8020</value>" in read_file("/etc/hadoop/core-site.xml")
    site = read_file("/etc/hadoop/hdfs-site.xml")
    assert "<name>dfs.webhdfs.enabled</name>\n    <value>true</value>" in site
    # 2 DataNodes: the durable default 3 is lowered to 2 (with the preflight warning).
    assert "<name>dfs.replication</name>\n    <value>2</value>" in site


def test_each_host_runs_the_units_of_its_daemons(host, assert_running):
    for daemon in daemons_of(host.backend.get_hostname()):
        assert_running(f"hdfs-{daemon}")


def test_firewalld_allows_the_named_services_of_the_daemons(host):
    services = host.run("firewall-cmd --list-services").stdout.split()
    for daemon in daemons_of(host.backend.get_hostname()):
        assert f"hdfs-{daemon}" in services


def test_the_namenode_was_formatted_once_before_it_first_started(host):
    if host.backend.get_hostname() not in NAMENODES:
        pytest.skip("only the NameNode is formatted")
    version = host.file(f"{NAME_DIR}/current/VERSION")
    assert version_fields(version.content_string)["clusterID"].startswith("CID-")
    # The NameNode started once, after the format, and nothing re-formatted or restarted it since
    # (converge, idempotence run, side effect).
    journal = host.run(
        "journalctl --unit hdfs-namenode --grep 'NameNode RPC up' --output json --no-pager"
    ).stdout
    starts = [json.loads(line) for line in journal.splitlines()]
    assert len(starts) == 1, journal
    assert version.mtime.timestamp() * 1e6 < int(starts[0]["__REALTIME_TIMESTAMP"])


def test_every_datanode_registered_with_the_namenode_cluster_id(host):
    if host.backend.get_hostname() not in DATANODES:
        pytest.skip("not a DataNode")
    namenode_version = inventory_host(NAMENODES[0]).file(f"{NAME_DIR}/current/VERSION").content_string
    datanode_version = host.file(f"{DATA_DIR}/current/VERSION").content_string
    assert version_fields(datanode_version)["clusterID"] == version_fields(namenode_version)["clusterID"]


def test_webhdfs_reports_two_live_datanodes_and_the_directories_of_the_interfaces(host, scenario_vars):
    if host.backend.get_hostname() not in DATANODES:
        pytest.skip("asked from each DataNode, through the NameNode's firewall")
    address = scenario_vars(namenode=f"hostvars['{NAMENODES[0]}']['ansible_host']")["namenode"]
    beans = http_json(host, f"http://{address}:9870/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState")[
        "beans"
    ]
    assert beans[0]["NumLiveDataNodes"] == len(DATANODES)
    for path, mode in (("/mlstack", "755"), ("/mlstack/datasets", "775"), ("/mlstack/models", "775")):
        status = http_json(host, f"http://{address}:9870/webhdfs/v1{path}?op=GETFILESTATUS")["FileStatus"]
        assert (status["type"], status["owner"], status["group"], status["permission"]) == (
            "DIRECTORY",
            "hdfs",
            "hadoop",
            mode,
        )
