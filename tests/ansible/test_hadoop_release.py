"""The Hadoop release that `make releases` assembles from Maven Central (ansible/releases/hadoop/): shaped as
the hdfs role installs it, its launchers behaving as Apache Hadoop's do for what the role's tasks and units
run (on a real NameNode and DataNode), and the role's air-gap checks accepting it. How every release is
built and verified: test_releases.py."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tarfile
import urllib.request

import pytest

from tests.ansible.support import load_yaml
from tests.support import jmx_exporter
from tests.support.hadoop_release import HdfsCluster, java_home
from tests.support.releases import HADOOP, KAFKA, ROOT, required, verified_sha512

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hadoop_release")]
ROLE = ROOT / "ansible" / "roles" / "hdfs"


@pytest.fixture(scope="module")
def tarball() -> pathlib.Path:
    return required(HADOOP)


@pytest.fixture(scope="module")
def home(tarball, tmp_path_factory) -> pathlib.Path:
    return required(HADOOP, tmp_path_factory.mktemp("hadoop-release"))


@pytest.fixture(scope="module")
def cluster(home, tmp_path_factory):
    with HdfsCluster.running(home, tmp_path_factory.mktemp("hdfs")) as running:
        yield running


def launcher(home: pathlib.Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """bin/hdfs (or another launcher, when args[0] is a path) with JAVA_HOME and the release's etc/hadoop."""
    program = args[0] if "/" in args[0] else str(home / "bin" / "hdfs")
    rest = args[1:] if "/" in args[0] else args
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HADOOP_", "HDFS_"))}
    return subprocess.run(
        [program, *rest],
        capture_output=True,
        text=True,
        env={**base, "JAVA_HOME": java_home(), "HADOOP_CLIENT_OPTS": "-Xmx128m", **env},
        timeout=120,
        check=False,
    )


def test_the_release_holds_what_the_hdfs_role_installs_and_runs(tarball):
    vars_ = load_yaml(ROLE / "vars" / "main.yml")
    assert vars_["_hdfs_tarball"].replace("{{ hdfs_version }}", HADOOP.version) == tarball.name
    assert vars_["_hdfs_bin"] == "{{ _hdfs_link }}/bin/hdfs"
    name = HADOOP.name
    with tarfile.open(tarball) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert {m.split("/")[0] for m in members} == {name}, "one top directory, unpacked into /opt by the role"
    for program in ("bin/hdfs", "bin/hadoop", "sbin/hadoop-daemon.sh", "libexec/hadoop-config.sh"):
        assert members[f"{name}/{program}"].mode == 0o755, program
    for kept in ("etc/hadoop/log4j.properties", "etc/hadoop/hadoop-env.sh", "share/hadoop/jars.sha1"):
        assert f"{name}/{kept}" in members
    jars = {pathlib.PurePosixPath(m).name: m for m in members if m.endswith(".jar")}
    assert (
        jars[f"hadoop-hdfs-{HADOOP.version}.jar"]
        == f"{name}/share/hadoop/hdfs/hadoop-hdfs-{HADOOP.version}.jar"
    )
    assert jars[f"hadoop-common-{HADOOP.version}.jar"].startswith(f"{name}/share/hadoop/common/hadoop-common")
    assert jars["reload4j-1.2.22.jar"].startswith(f"{name}/share/hadoop/common/lib/")
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == members[name].mtime for m in members.values())


def test_without_java_home_the_launcher_stops_as_hadoops_does(home):
    result = subprocess.run(
        [str(home / "bin" / "hdfs"), "version"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "JAVA_HOME"},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "ERROR: JAVA_HOME is not set and could not be found."


def test_an_unknown_subcommand_exits_1_with_the_usage(home):
    result = launcher(home, "nosuchcommand")
    assert result.returncode == 1
    assert "nosuchcommand is not COMMAND nor fully qualified CLASSNAME" in result.stderr
    assert "namenode" in result.stderr


def test_version_classpath_and_getconf_answer_from_the_release(home, tmp_path):
    version = launcher(home, "version")
    assert version.returncode == 0 and version.stdout.splitlines()[0] == f"Hadoop {HADOOP.version}"
    assert (
        launcher(home, str(home / "bin" / "hadoop"), "version").stdout.splitlines()[0]
        == version.stdout.splitlines()[0]
    )
    globbed = launcher(home, "classpath", "--glob").stdout.strip().split(":")
    assert globbed[0] == str(home / "etc" / "hadoop")
    assert all(pathlib.Path(entry).exists() for entry in globbed)
    assert str(home / "share/hadoop/hdfs" / f"hadoop-hdfs-{HADOOP.version}.jar") in globbed
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "hdfs-site.xml").write_text(
        "<configuration><property><name>dfs.replication</name><value>2</value></property></configuration>"
    )
    got = launcher(home, "--config", str(conf), "getconf", "-confKey", "dfs.replication")
    assert (got.returncode, got.stdout.strip()) == (0, "2"), got.stderr


def test_hadoop_env_in_the_configuration_directory_is_read_first(home, tmp_path):
    """The role writes JAVA_HOME and the daemons' options into HADOOP_CONF_DIR/hadoop-env.sh."""
    (tmp_path / "hadoop-env.sh").write_text(
        f"export JAVA_HOME={java_home()}\nexport HADOOP_CLIENT_OPTS=-Dx.y=z\n"
    )
    result = subprocess.run(
        [str(home / "bin" / "hdfs"), "version"],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "JAVA_HOME"}, "HADOOP_CONF_DIR": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_formatting_twice_non_interactively_refuses_and_keeps_the_metadata(home, cluster):
    """The role formats once (its `creates` guard); were the guard lost, hdfs itself refuses."""
    version = cluster.workdir / "name" / "current" / "VERSION"
    before = version.read_text()
    again = cluster.hdfs("namenode", "-format", "-nonInteractive")
    assert again.returncode == 1
    assert "Not formatting" in again.stdout + again.stderr
    assert version.read_text() == before


def test_the_role_directory_commands_give_the_state_its_when_expects(cluster):
    """directories.yml: -stat '%F %u:%g %a' must print "directory owner:group mode" (mode without a
    leading 0) once -mkdir -p, -chown and -chmod have run, or the role would correct it on every run."""
    path = "/mlstack/datasets"
    missing = cluster.hdfs("dfs", "-stat", "%F %u:%g %a", path)
    assert missing.returncode != 0 and "No such file or directory" in missing.stderr
    for command in (["-mkdir", "-p", path], ["-chown", "hdfs:hadoop", path], ["-chmod", "0775", path]):
        done = cluster.hdfs("dfs", *command)
        assert done.returncode == 0, done.stderr
    stat = cluster.hdfs("dfs", "-stat", "%F %u:%g %a", path)
    assert stat.stdout.strip() == "directory hdfs:hadoop 775"


def test_put_get_report_and_webhdfs_on_a_running_cluster(cluster, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(300_000))
    put = cluster.hdfs("dfs", "-put", str(payload), "/payload.bin")
    assert put.returncode == 0, put.stderr
    got = cluster.hdfs("dfs", "-get", "/payload.bin", str(tmp_path / "back.bin"))
    assert got.returncode == 0 and (tmp_path / "back.bin").read_bytes() == payload.read_bytes()
    assert cluster.hdfs("dfs", "-stat", "%r %b", "/payload.bin").stdout.split() == ["1", "300000"]
    report = cluster.hdfs("dfsadmin", "-report")
    assert re.search(r"Live datanodes \(1\)", report.stdout), report.stdout
    listing = f"http://127.0.0.1:{cluster.http_port}/webhdfs/v1/?op=LISTSTATUS"
    with urllib.request.urlopen(listing, timeout=10) as answer:
        names = [entry["pathSuffix"] for entry in json.load(answer)["FileStatuses"]["FileStatus"]]
    assert "payload.bin" in names


def test_daemon_mode_starts_reports_and_stops_as_hadoops_does(home, tmp_path):
    """hdfs --daemon start|status|stop and sbin/hadoop-daemon.sh: a pid file, Hadoop's status codes."""
    env = {"HADOOP_PID_DIR": str(tmp_path / "pids"), "HADOOP_LOG_DIR": str(tmp_path / "logs")}
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(home / "etc/hadoop/log4j.properties", conf)
    env |= {"HADOOP_CONF_DIR": str(conf), "HDFS_JOURNALNODE_OPTS": "-Xmx96m -XX:+UseSerialGC"}
    (conf / "hdfs-site.xml").write_text(
        "<configuration>"
        f"<property><name>dfs.journalnode.edits.dir</name><value>{tmp_path / 'journal'}</value></property>"
        "<property><name>dfs.journalnode.rpc-address</name><value>127.0.0.1:0</value></property>"
        "<property><name>dfs.journalnode.http-address</name><value>127.0.0.1:0</value></property>"
        "</configuration>"
    )
    assert launcher(home, "--daemon", "status", "journalnode", **env).returncode == 3
    started = launcher(home, "--daemon", "start", "journalnode", **env)
    assert started.returncode == 0, started.stderr
    try:
        status = launcher(home, str(home / "sbin/hadoop-daemon.sh"), "status", "journalnode", **env)
        assert status.returncode == 0 and "journalnode is running as process" in status.stdout
        twice = launcher(home, "--daemon", "start", "journalnode", **env)
        assert twice.returncode == 1 and "Stop it first" in twice.stdout
    finally:
        stopped = launcher(home, "--daemon", "stop", "journalnode", **env)
    assert stopped.returncode == 0, stopped.stderr
    assert launcher(home, "--daemon", "status", "journalnode", **env).returncode == 3
    assert list((tmp_path / "logs").glob("hadoop-*-journalnode-*.log")), "the daemon logs to HADOOP_LOG_DIR"


def test_a_foreground_daemon_ends_with_143_on_sigterm_as_the_unit_expects(home, cluster):
    """hdfs.service.j2: SuccessExitStatus=143. The DataNode is restarted for the tests after it."""
    unit = (ROLE / "templates" / "hdfs.service.j2").read_text()
    assert "SuccessExitStatus=143" in unit and "ExecStart={{ _hdfs_bin }} {{ item }}" in unit
    datanode = cluster.datanodes[0]
    datanode.process.send_signal(signal.SIGTERM)
    assert datanode.process.wait(60) == 143
    datanode.start()
    cluster.wait_until_ready(120)


def test_the_hdfs_roles_air_gap_checks_accept_the_release_with_its_checksum_pinned(tarball, tmp_path):
    """playbooks/preflight.yml as tests/ansible/test_data_tier_preflight.py runs it, with both real
    tarballs and their .sha512 and the real JMX exporter jar in the air-gap directory, the versions from the
    POMs, the roles' own exporter pins and hdfs_release_sha512 pinned: release_artifact finds every file,
    its checksum and the pin in agreement; a wrong pin is refused naming both checksums."""
    from tests.ansible import test_data_tier_preflight as preflight

    airgap = tmp_path / "airgap"
    airgap.mkdir()
    kafka = KAFKA.build()
    for release in (tarball, kafka):
        for name in (release.name, f"{release.name}.sha512"):
            shutil.copyfile(release.parent / name, airgap / name)  # a copy: the role does not follow links
    jar = jmx_exporter.verified_jar()
    shutil.copyfile(jar, airgap / jar.name)
    pins = {
        f"{role}_jmx_exporter_sha256": load_yaml(ROOT / "ansible/roles" / role / "defaults/main.yml")[
            f"{role}_jmx_exporter_sha256"
        ]
        for role in ("kafka", "hdfs")
    }
    for disk in ("disk1", "disk2"):
        (tmp_path / "data" / disk).mkdir(parents=True)
    versions = {"hdfs_version": HADOOP.version, "kafka_version": KAFKA.version, **pins}

    def preflight_with(pin: str, facts: str):
        document = preflight.inventory(
            tmp_path, airgap, tmp_path / "data", preflight.SMALL, hdfs_release_sha512=pin, **versions
        )
        return preflight.run_preflight(tmp_path, document, tmp_path / facts)

    outcome = preflight_with(verified_sha512(tarball), "facts")
    assert outcome.returncode == 0, outcome.failed or outcome.stderr[-3000:]
    refused = preflight_with("0" * 128, "facts-wrong")
    assert refused.returncode != 0
    said = str(refused.failed)
    assert f"publishes {verified_sha512(tarball)} for {tarball.name}" in said, said
    assert "but hdfs_release_sha512 pins 000" in said, said
