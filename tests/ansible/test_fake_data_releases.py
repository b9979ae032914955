"""The fake_hadoop_release and fake_kafka_release test doubles behave like the real programs where the
hdfs and kafka roles depend on them (format once, refusal of unformatted or foreign storage, daemons on
their configured ports, the admin commands and output formats the roles parse). Run locally, from the
built tarballs, on loopback ports; the data_tier molecule scenario then runs them under systemd."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import tarfile
import time
import urllib.request

import pytest

from tests.conftest import pick_free_port
from tests.support.fake_hadoop_release.__main__ import build_release as build_hadoop
from tests.support.fake_kafka_release.__main__ import build_release as build_kafka

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fake_data_releases")]


@pytest.fixture
def java_home(tmp_path) -> pathlib.Path:
    """A JAVA_HOME with an executable bin/java (the doubles check it exists; they never run it)."""
    home = tmp_path / "jvm"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\nexit 0\n")
    (home / "bin" / "java").chmod(0o755)
    return home


def unpack(tarball: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    return into / tarball.name.removesuffix(".tar.gz").removesuffix(".tgz")


def run(program: pathlib.Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
        check=False,
    )


def wait_for(predicate, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def daemons():
    started: list[subprocess.Popen] = []

    def start(program: pathlib.Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen(
            [str(program), *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


def hadoop_xml(path: pathlib.Path, properties: dict[str, str]) -> None:
    body = "".join(f"<property><name>{k}</name><value>{v}</value></property>" for k, v in properties.items())
    path.write_text(f"<?xml version='1.0'?><configuration>{body}</configuration>")


@pytest.fixture
def hadoop(tmp_path, java_home):
    home = unpack(build_hadoop("3.4.1", tmp_path / "release"), tmp_path / "opt")
    conf = tmp_path / "conf"
    conf.mkdir()
    ports = {name: pick_free_port() for name in ("rpc", "http", "dn_http", "dn_data", "dn_ipc")}
    (conf / "hadoop-env.sh").write_text(f"export JAVA_HOME={java_home}\n")
    hadoop_xml(conf / "core-site.xml", {"fs.defaultFS": f"hdfs://127.0.0.1:{ports['rpc']}"})
    hadoop_xml(
        conf / "hdfs-site.xml",
        {
            "dfs.namenode.name.dir": f"file://{tmp_path}/name",
            "dfs.datanode.data.dir": f"file://{tmp_path}/data",
            "dfs.namenode.rpc-address": f"127.0.0.1:{ports['rpc']}",
            "dfs.namenode.http-address": f"127.0.0.1:{ports['http']}",
            "dfs.datanode.http.address": f"0.0.0.0:{ports['dn_http']}",
            "dfs.datanode.address": f"0.0.0.0:{ports['dn_data']}",
            "dfs.datanode.ipc.address": f"0.0.0.0:{ports['dn_ipc']}",
        },
    )
    return home / "bin" / "hdfs", {"HADOOP_CONF_DIR": str(conf)}, ports, tmp_path


def version_fields(path: pathlib.Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#"
    )


def test_hadoop_namenode_is_formatted_once_and_a_second_non_interactive_format_refuses(hadoop):
    hdfs, env, _, root = hadoop
    assert run(hdfs, "namenode", "-format", "-nonInteractive", env=env).returncode == 0
    first = version_fields(root / "name" / "current" / "VERSION")
    assert first["clusterID"].startswith("CID-")
    again = run(hdfs, "namenode", "-format", "-nonInteractive", env=env)
    assert again.returncode == 1 and "Not formatting." in again.stderr
    assert version_fields(root / "name" / "current" / "VERSION") == first


def test_hadoop_daemons_refuse_a_java_home_without_java_and_an_unformatted_namenode(hadoop, tmp_path):
    hdfs, env, _, _ = hadoop
    unformatted = run(hdfs, "namenode", env=env)
    assert unformatted.returncode == 1 and "not formatted" in unformatted.stderr
    (pathlib.Path(env["HADOOP_CONF_DIR"]) / "hadoop-env.sh").write_text(
        f"export JAVA_HOME={tmp_path}/nojava\n"
    )
    no_java = run(hdfs, "namenode", "-format", "-nonInteractive", env=env)
    assert no_java.returncode == 1 and "JAVA_HOME" in no_java.stderr


def test_hadoop_datanode_takes_the_namenode_cluster_id_and_dfs_commands_change_the_namespace(hadoop, daemons):
    hdfs, env, ports, root = hadoop
    assert run(hdfs, "namenode", "-format", "-nonInteractive", env=env).returncode == 0
    daemons(hdfs, "namenode", env=env)
    daemons(hdfs, "datanode", env=env)
    data_version = root / "data" / "current" / "VERSION"
    wait_for(data_version.exists, "the DataNode to register")
    assert (
        version_fields(data_version)["clusterID"]
        == version_fields(root / "name" / "current" / "VERSION")["clusterID"]
    )
    missing = run(hdfs, "dfs", "-stat", "%F %u:%g %a", "/mlstack", env=env)
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr
    for args in (
        ("-mkdir", "-p", "/mlstack/models"),
        ("-chown", "hdfs:hadoop", "/mlstack/models"),
        ("-chmod", "0775", "/mlstack/models"),
    ):
        result = run(hdfs, "dfs", *args, env=env)
        assert result.returncode == 0, result.stderr
    stat = run(hdfs, "dfs", "-stat", "%F %u:%g %a", "/mlstack/models", env=env)
    assert stat.stdout.strip() == "directory hdfs:hadoop 775"
    with urllib.request.urlopen(
        f"http://127.0.0.1:{ports['http']}/webhdfs/v1/mlstack/models?op=GETFILESTATUS"
    ) as reply:
        assert json.load(reply)["FileStatus"]["permission"] == "775"
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/jmx") as reply:
        assert json.load(reply)["beans"][0]["NumLiveDataNodes"] == 1


@pytest.fixture
def kafka(tmp_path, java_home):
    home = unpack(build_kafka("4.1.0", tmp_path / "release"), tmp_path / "opt")
    broker, controller = pick_free_port(), pick_free_port()
    config = tmp_path / "server.properties"
    config.write_text(
        "process.roles=broker,controller\nnode.id=1\n"
        f"controller.quorum.voters=1@127.0.0.1:{controller}\n"
        f"listeners=BROKER://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}\n"
        "controller.listener.names=CONTROLLER\n"
        f"log.dirs={tmp_path}/logs-a,{tmp_path}/logs-b\n"
    )
    admin = tmp_path / "admin.properties"
    admin.write_text("security.protocol=PLAINTEXT\n")
    return home / "bin", config, admin, f"127.0.0.1:{broker}", {"JAVA_HOME": str(java_home)}


def test_kafka_storage_is_formatted_once_and_never_reformatted(kafka, tmp_path):
    bin_dir, config, _, _, env = kafka
    cluster_id = run(bin_dir / "kafka-storage.sh", "random-uuid", env=env).stdout.strip()
    assert len(cluster_id) == 22
    first = run(
        bin_dir / "kafka-storage.sh",
        "format",
        "--config",
        str(config),
        "--cluster-id",
        cluster_id,
        "--ignore-formatted",
        env=env,
    )
    assert first.returncode == 0 and first.stdout.count("Formatting") == 2
    meta = (tmp_path / "logs-a" / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in meta and "node.id=1" in meta
    other_id = run(bin_dir / "kafka-storage.sh", "random-uuid", env=env).stdout.strip()
    skipped = run(
        bin_dir / "kafka-storage.sh",
        "format",
        "--config",
        str(config),
        "--cluster-id",
        other_id,
        "--ignore-formatted",
        env=env,
    )
    assert skipped.returncode == 0 and "Formatting" not in skipped.stdout
    refused = run(
        bin_dir / "kafka-storage.sh", "format", "--config", str(config), "--cluster-id", other_id, env=env
    )
    assert refused.returncode == 1 and "already formatted" in refused.stderr
    assert (tmp_path / "logs-a" / "meta.properties").read_text() == meta


def test_kafka_server_refuses_unformatted_storage(kafka):
    bin_dir, config, _, _, env = kafka
    result = run(bin_dir / "kafka-server-start.sh", str(config), env=env)
    assert result.returncode == 1 and "meta.properties" in result.stderr


def test_kafka_topics_are_created_described_grown_and_reconfigured_in_the_format_the_role_parses(
    kafka, daemons
):
    bin_dir, config, admin, bootstrap, env = kafka
    cluster_id = run(bin_dir / "kafka-storage.sh", "random-uuid", env=env).stdout.strip()
    run(bin_dir / "kafka-storage.sh", "format", "--config", str(config), "--cluster-id", cluster_id, env=env)
    daemons(bin_dir / "kafka-server-start.sh", str(config), env=env)
    client = ("--bootstrap-server", bootstrap, "--command-config", str(admin))

    def topics(*args: str) -> subprocess.CompletedProcess[str]:
        return run(bin_dir / "kafka-topics.sh", *client, *args, env=env)

    wait_for(lambda: topics("--list").returncode == 0, "the broker to listen")
    created = topics(
        "--create",
        "--topic",
        "t1",
        "--partitions",
        "2",
        "--replication-factor",
        "1",
        "--config",
        "retention.ms=1000",
    )
    assert created.returncode == 0, created.stderr
    assert (
        "already exists"
        in topics("--create", "--topic", "t1", "--partitions", "2", "--replication-factor", "1").stderr
    )
    assert (
        "larger than available brokers"
        in topics("--create", "--topic", "t2", "--partitions", "1", "--replication-factor", "3").stderr
    )
    assert topics("--alter", "--topic", "t1", "--partitions", "3").returncode == 0
    assert topics("--alter", "--topic", "t1", "--partitions", "1").returncode == 1
    configs = run(
        bin_dir / "kafka-configs.sh",
        *client,
        "--alter",
        "--entity-type",
        "topics",
        "--entity-name",
        "t1",
        "--add-config",
        "cleanup.policy=compact",
        env=env,
    )
    assert configs.returncode == 0, configs.stderr
    described = topics("--describe").stdout
    # The role's pattern (roles/kafka/tasks/topics.yml).
    pattern = r"(?m)^Topic:\s*(\S+)\s+TopicId:\s*\S+\s+PartitionCount:\s*(\d+)\s+ReplicationFactor:\s*(\d+)\s+Configs:[ \t]*(\S*)[ \t]*$"
    assert re.findall(pattern, described) == [("t1", "3", "1", "cleanup.policy=compact,retention.ms=1000")]
    wait_for(
        lambda: topics("--describe", "--under-replicated-partitions").stdout.strip() == "",
        "the node to catch up",
    )


def test_kafka_format_takes_scram_users_as_separate_arguments_and_refuses_malformed_ones(kafka, tmp_path):
    bin_dir, config, _, _, env = kafka
    format_args = ("format", "--config", str(config), "--cluster-id", "A" * 22)
    malformed = run(
        bin_dir / "kafka-storage.sh", *format_args, "--add-scram", "SCRAM-SHA-512=[name=admin]", env=env
    )
    assert malformed.returncode == 1 and "--add-scram takes" in malformed.stderr
    joined = run(
        bin_dir / "kafka-storage.sh", *format_args, "--add-scram\nSCRAM-SHA-512=[name=a,password=b]", env=env
    )
    assert joined.returncode == 1
    assert not (tmp_path / "logs-a" / "meta.properties").exists(), "a refused format wrote meta.properties"
    user = "SCRAM-SHA-512=[name=admin,password=twelve-chars-ok]"
    assert run(bin_dir / "kafka-storage.sh", *format_args, "--add-scram", user, env=env).returncode == 0
