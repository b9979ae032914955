"""The program uses exactly the names, ports and files of docs/interfaces.md (and the real ansible/)."""

from __future__ import annotations

import pytest
import yaml

from infra import config
from infra.config import Streaming
from infra.specs import inventory, namespaces, network, ports, streaming
from tests.infra.program import ROOT, STACKS, run_program
from tests.support import interfaces
from workloads.serving import tfs_config
from workloads.streaming import kafka

pytestmark = pytest.mark.xdist_group(name="infra-program")


def test_every_port_the_program_opens_is_in_the_contract():
    documented = interfaces.ports()
    used = {
        value
        for name, value in vars(ports).items()
        if name.isupper() and name not in ("SSH", "DNS", "HTTP", "HTTPS")
    }
    assert used <= documented, f"ports missing from docs/interfaces.md: {sorted(used - documented)}"
    rules = network.ingress_rules(["203.0.113.0/24"])
    opened = {port for rule in rules for port in range(rule.from_port, rule.to_port + 1)} - {ports.SSH}
    assert opened <= documented


def test_the_ansible_groups_are_the_contract_groups():
    assert tuple(interfaces.names("Ansible groups")) == config.ANSIBLE_GROUPS


def test_the_namespaces_are_the_contract_namespaces():
    assert interfaces.names("Optional Kubernetes namespace") == [namespaces.TRACKING]
    documented = set(interfaces.names("Kubernetes namespaces"))
    ours = {
        namespaces.TRAINING,
        namespaces.SERVING,
        namespaces.DATA,
        namespaces.ARGO,
        namespaces.MONITORING,
        namespaces.GPU,
    }
    assert ours == documented


def test_the_streaming_services_use_the_contract_kafka_topics():
    flags = {
        flag: value
        for args in (build(Streaming()) for build in streaming.COMMANDS.values())
        for flag, value in zip(args[::2], args[1::2], strict=True)
        if flag.endswith("-topic") or flag == "--topic"
    }
    assert set(flags.values()) == set(interfaces.names("Kafka topics"))
    assert len(flags) == 4, flags


def test_no_infra_module_restates_a_name_the_workloads_define():
    """The serving model name, the Kafka topics and consumer groups: imported, never written again."""
    names = [
        tfs_config.MODEL_NAME,
        kafka.REQUESTS_TOPIC,
        kafka.RESULTS_TOPIC,
        kafka.DLQ_TOPIC,
        kafka.INGEST_TOPIC,
        kafka.INFER_WORKER_GROUP,
        kafka.STREAM_INGEST_GROUP,
    ]
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "infra").rglob("*.py"))
        for name in names
        if name in path.read_text()
    ]
    assert not found, f"import these from workloads (tfs_config, streaming.kafka) instead: {found}"


def test_pods_run_as_the_contract_container_user():
    from infra.specs.workload import NON_ROOT_UID

    assert str(NON_ROOT_UID) in interfaces.names("Container user")


@pytest.mark.parametrize("stack", STACKS)
def test_the_example_stacks_run_against_the_projects_own_ansible_directory(stack):
    """Uses ansible/ as shipped (written by the Ansible layer); fails until it exists in this tree."""
    site = ROOT / "ansible" / "playbooks" / "site.yml"
    assert site.is_file(), f"{site} is missing: the host configuration has no playbook to run"
    run, error, _ = run_program(stack)
    assert error is None, error
    (command,) = run.of_type("command:local:Command")
    assert command.inputs["triggers"] == [inventory.tree_digest(ROOT / "ansible")]
    plays = yaml.safe_load(site.read_text())
    targets = {str(play["hosts"]) for play in plays if "hosts" in play}
    allowed = set(config.ANSIBLE_GROUPS) | {"all", "localhost"}
    for target in targets:
        assert set(target.replace("&", ":").replace("!", "").split(":")) - {""} <= allowed, target
