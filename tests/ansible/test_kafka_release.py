"""The Kafka release that `make releases` assembles from Maven Central (ansible/releases/kafka/): shaped as
the kafka role installs it, its programs behaving as the role's tasks expect on a running node, and the
role's air-gap checks accepting it (how every release is built and verified: test_releases.py)."""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib
import re
import subprocess
import tarfile

import pytest

from tests.ansible.support import load_yaml
from tests.conftest import pick_free_port
from tests.support.kafka_release import KafkaNode
from tests.support.releases import KAFKA, ROOT, required, verified_sha512

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("kafka_release")]
ROLE = ROOT / "ansible" / "roles" / "kafka"
NODE_ID = 4242  # kafka-server-stop.sh --node-id picks this node out of any other on the machine


@pytest.fixture(scope="module")
def tarball() -> pathlib.Path:
    return required(KAFKA)


@pytest.fixture(scope="module")
def home(tarball, tmp_path_factory) -> pathlib.Path:
    return required(KAFKA, tmp_path_factory.mktemp("kafka-release"))


@pytest.fixture(scope="module")
def node(home, tmp_path_factory):
    with KafkaNode.running(home, tmp_path_factory.mktemp("kafka-node"), node_id=NODE_ID) as running:
        yield running


def tool(home: pathlib.Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(home / "bin" / script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "KAFKA_HEAP_OPTS": "-Xmx128m"},
        timeout=120,
        check=False,
    )


def role_programs() -> set[str]:
    """bin/ programs the role's tasks and unit run: "{{ _kafka_link }}/bin/X" and _kafka_link + '/bin/X'."""
    text = "".join(
        p.read_text() for p in [*(ROLE / "tasks").glob("*.yml"), *(ROLE / "templates").glob("*.j2")]
    )
    return set(re.findall(r"_kafka_link(?: \}\}|\s*\+\s*')/bin/([\w.-]+)", text))


def test_the_release_holds_every_program_the_kafka_role_runs(tarball):
    defaults = load_yaml(ROLE / "defaults" / "main.yml")
    name = KAFKA.name
    assert name == f"kafka_{defaults['kafka_scala_version']}-{name.rsplit('-', 1)[1]}", (
        "the tarball is named as the role names it: kafka_<kafka_scala_version>-<kafka_version>.tgz"
    )
    programs = role_programs()
    assert {"kafka-server-start.sh", "kafka-storage.sh", "kafka-topics.sh", "kafka-configs.sh"} <= programs
    with tarfile.open(tarball) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert {m.split("/")[0] for m in members} == {name}, "one top directory, unpacked into /opt by the role"
    for program in programs:
        member = members.get(f"{name}/bin/{program}")
        assert member is not None and member.isfile(), f"bin/{program} is missing"
        assert member.mode == 0o755, f"bin/{program} has mode {member.mode:o}"
    jars = [m for m in members if m.startswith(f"{name}/libs/") and m.endswith(".jar")]
    assert len(jars) > 50
    for kept in ("config/log4j2.yaml", "config/tools-log4j2.yaml", "libs.sha1"):
        assert f"{name}/{kept}" in members
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == members[name].mtime for m in members.values())


def format_argv(config: pathlib.Path, cluster_id: str) -> list[str]:
    """kafka-storage.sh format as configure.yml runs it (the id joined to its flag: ids may start with '-')."""
    return [
        "format",
        "--config",
        str(config),
        f"--cluster-id={cluster_id}",
        "--ignore-formatted",
        "--add-scram",
        "SCRAM-SHA-512=[name=admin,password=a-long-password]",
    ]


@pytest.mark.parametrize("generated", [True, False], ids=["random-uuid", "id-starting-with-a-dash"])
def test_storage_format_says_formatting_only_the_first_time(home, tmp_path, generated):
    """configure.yml runs format with --ignore-formatted and counts it as a change when it prints
    "Formatting"; preflight reads cluster.id and node.id from meta.properties. A kafka_cluster_id the
    user sets may start with '-' (one base64url id in 64 does), which a separate argument would not pass."""
    config = tmp_path / "server.properties"
    port = pick_free_port()
    config.write_text(
        "process.roles=controller\nnode.id=3\ncontroller.listener.names=CONTROLLER\n"
        f"controller.quorum.voters=3@127.0.0.1:{port}\nlisteners=CONTROLLER://127.0.0.1:{port}\n"
        f"log.dirs={tmp_path / 'data'}\n"
    )
    if generated:
        printed = tool(home, "kafka-storage.sh", "random-uuid")
        assert printed.returncode == 0 and re.fullmatch(r"[A-Za-z0-9_-]{22}\n", printed.stdout)
        cluster_id = printed.stdout.strip()
    else:
        cluster_id = base64.urlsafe_b64encode(b"\xfb" + bytes(range(15))).decode().rstrip("=")
        assert cluster_id.startswith("-")
    argv = format_argv(config, cluster_id)
    first, second = tool(home, "kafka-storage.sh", *argv), tool(home, "kafka-storage.sh", *argv)
    assert first.returncode == 0 and "Formatting" in first.stdout, first.stdout + first.stderr
    assert second.returncode == 0 and "Formatting" not in second.stdout, second.stdout + second.stderr
    meta = (tmp_path / "data" / "meta.properties").read_text()
    assert dict(re.findall(r"(?m)^(cluster\.id|node\.id)=(\S+)$", meta)) == {
        "cluster.id": cluster_id,
        "node.id": "3",
    }


def test_the_topic_commands_of_the_role_work_on_a_running_node(home, node, tmp_path):
    """topics.yml: describe (parsed with the role's own pattern), create with settings, add partitions,
    correct settings with kafka-configs.sh; restart_node.yml: no under-replicated partition."""
    admin_config = tmp_path / "admin.properties"
    admin_config.write_text("security.protocol=PLAINTEXT\n")
    common = ["--bootstrap-server", node.bootstrap, "--command-config", str(admin_config)]
    topics_tasks = load_yaml(ROLE / "tasks" / "topics.yml")
    pattern = next(t["vars"] for t in topics_tasks if "_kafka_describe_pattern" in t.get("vars", {}))[
        "_kafka_describe_pattern"
    ]

    created = tool(home, "kafka-topics.sh", *common, "--create", "--topic", "role.topic", "--partitions", "2",
                   "--replication-factor", "1", "--config", "retention.ms=86400000")  # fmt: skip
    assert created.returncode == 0, created.stderr
    again = tool(home, "kafka-topics.sh", *common, "--create", "--topic", "role.topic", "--partitions", "2",
                 "--replication-factor", "1")  # fmt: skip
    assert again.returncode != 0, "creating an existing topic fails: the role creates only missing ones"
    grown = tool(home, "kafka-topics.sh", *common, "--alter", "--topic", "role.topic", "--partitions", "3")
    assert grown.returncode == 0, grown.stderr
    configured = tool(home, "kafka-configs.sh", *common, "--alter", "--entity-type", "topics",
                      "--entity-name", "role.topic", "--add-config", "retention.ms=3600000")  # fmt: skip
    assert configured.returncode == 0, configured.stderr

    described = tool(home, "kafka-topics.sh", *common, "--describe")
    assert described.returncode == 0, described.stderr
    found = {m[0]: m for m in re.findall(pattern, described.stdout)}
    assert found["role.topic"][1:3] == ("3", "1")
    assert "retention.ms=3600000" in found["role.topic"][3].split(",")

    under = tool(home, "kafka-topics.sh", *common, "--describe", "--under-replicated-partitions")
    assert under.returncode == 0 and under.stdout.strip() == "", under.stdout + under.stderr
    quorum = tool(
        home, "kafka-metadata-quorum.sh", "--bootstrap-server", node.bootstrap, "describe", "--status"
    )
    assert quorum.returncode == 0 and re.search(rf"(?m)^LeaderId:\s+{NODE_ID}$", quorum.stdout), quorum.stdout


def test_kafka_server_stop_stops_only_the_node_it_names(home, node):
    other = tool(home, "kafka-server-stop.sh", f"--node-id={NODE_ID + 1}")
    assert other.returncode == 0 and node.process.poll() is None, "a node of another id keeps running"
    stopped = tool(home, "kafka-server-stop.sh", f"--node-id={NODE_ID}")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert node.process.wait(60) == 143, "SIGTERM: a controlled shutdown (the unit's SuccessExitStatus)"
    assert "Transition from STARTED to SHUTTING_DOWN" in node.log(200000)


def test_the_kafka_roles_air_gap_checks_accept_the_release_with_its_checksum_pinned(tarball, tmp_path):
    """playbooks/preflight.yml as tests/ansible/test_data_tier_preflight.py runs it (this machine under three
    inventory names, read-only), with this tarball and its .sha512 in the air-gap directory, kafka_version
    from the POM and kafka_release_sha512 pinned: release_artifact reads the checksum file and finds the
    tarball, the published checksum and the pin in agreement."""
    import shutil

    from tests.ansible import test_data_tier_preflight as preflight

    airgap = tmp_path / "airgap"
    airgap.mkdir()
    hadoop = preflight.tarball(preflight.HADOOP_TOP)
    (airgap / preflight.HADOOP).write_bytes(hadoop)
    (airgap / f"{preflight.HADOOP}.sha512").write_text(
        f"SHA512 ({preflight.HADOOP}) = {hashlib.sha512(hadoop).hexdigest()}\n"
    )
    for name in (tarball.name, f"{tarball.name}.sha512"):
        shutil.copyfile(tarball.parent / name, airgap / name)  # a copy: the role does not follow links
    (airgap / preflight.JMX_JAR).write_bytes(preflight.JMX_STAND_IN)  # its pin: preflight.inventory's
    for disk in ("disk1", "disk2"):
        (tmp_path / "data" / disk).mkdir(parents=True)
    version = KAFKA.version
    pin = verified_sha512(tarball)
    document = preflight.inventory(
        tmp_path, airgap, tmp_path / "data", preflight.SMALL, kafka_version=version, kafka_release_sha512=pin
    )
    outcome = preflight.run_preflight(tmp_path, document, tmp_path / "facts")
    assert outcome.returncode == 0, outcome.failed or outcome.stderr[-3000:]
