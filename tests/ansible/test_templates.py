"""Every role template renders with the role's own defaults and vars (each per-OS vars file in turn),
and what it renders is valid: YAML and XML parse, units have a [Service], and the k3s config.yaml holds
only k3s flags, with the join keys right for the first server, the other servers and the agents."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ElementTree

import pytest
import yaml

from tests.ansible.support import ROLES_DIR, ROOT, roles, run_playbook

HERE = pathlib.Path(__file__).parent
# Cluster addresses: where the nodes reach each other.
HOSTS = {"server1": "10.0.0.11", "server2": "10.0.0.12", "server3": "10.0.0.13", "agent1": "10.0.0.21"}
# Where Ansible reaches the servers (their ansible_host), as on AWS: public addresses beside the cluster
# addresses in cluster_address. agent1 sets no cluster_address: the roles fall back to its ansible_host.
PUBLIC = {"server1": "203.0.113.11", "server2": "203.0.113.12", "server3": "203.0.113.13"}
ENDPOINT = "api.mlstack.example"


def fake_k3s():
    spec = importlib.util.spec_from_file_location("fake_k3s", ROOT / "tests/support/fake_k3s_release/k3s.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The k3s roles render differently per cluster member; the others render once, on the first host.
PER_MEMBER = ("k3s_server", "k3s_agent", "k3s")


def variants() -> list[dict]:
    order = [*PER_MEMBER, *[r for r in roles() if r not in PER_MEMBER]]
    return [
        {
            "role": role,
            "os_vars": os_vars,
            "hosts": list(HOSTS) if role in PER_MEMBER else [next(iter(HOSTS))],
        }
        for role in order
        for os_vars in sorted(
            p.name for p in (ROLES_DIR / role / "vars").glob("*.yml") if p.name != "main.yml"
        )
        or [None]
    ]


def inventory_host(name: str) -> dict:
    split = {"ansible_host": PUBLIC[name], "cluster_address": HOSTS[name]} if name in PUBLIC else {}
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_host": HOSTS[name],
        **split,
    }


def render(out: pathlib.Path, render_roles: list[dict], **variables) -> dict[str, dict[str, dict[str, str]]]:
    """{host: {"<role>/<os_vars>": {template: text}}}, every role of render_roles rendered on its hosts."""
    inventory = out / "inventory.yml"
    members = {name: inventory_host(name) for name in HOSTS}
    servers = {name: value for name, value in members.items() if name.startswith("server")}
    agents = {name: value for name, value in members.items() if name.startswith("agent")}
    # Labels and taints: template_context/k3s.yml (role defaults would override inventory values there).
    # The data tier on the same hosts, so that every role renders for a member of its groups.
    data_tier = {
        "hdfs_namenodes": ["server1"],
        "hdfs_datanodes": ["agent1"],
        "kafka_controllers": ["server1"],
        "kafka_brokers": ["server1"],
        "gpu_nodes": ["agent1"],
    }
    groups = {"k3s_servers": {"hosts": servers}, "k3s_agents": {"hosts": agents}}
    groups |= {
        group: {"hosts": {name: members[name] for name in names}} for group, names in data_tier.items()
    }
    inventory.write_text(yaml.safe_dump({"all": {"children": groups}}))
    extra = {
        "render_roles": render_roles,
        "roles_dir": str(ROLES_DIR),
        "context_dir": str(HERE / "template_context"),
        "out_dir": str(out / "files"),
        **variables,
    }
    (out / "files").mkdir()
    result = run_playbook(HERE / "playbooks" / "render_templates.yml", inventory, "-e", json.dumps(extra))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {host: json.loads((out / "files" / f"{host}.json").read_text()) for host in HOSTS}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict[str, dict[str, str]]]:
    """Every role; the API endpoint a name of its own (an extra var outranks the role defaults loaded)."""
    return render(tmp_path_factory.mktemp("rendered"), variants(), k3s_api_endpoint=ENDPOINT)


@pytest.fixture(scope="module")
def rendered_default_endpoint(tmp_path_factory) -> dict[str, dict[str, dict[str, str]]]:
    """The k3s roles with k3s_api_endpoint left at its default."""
    k3s_variants = [v for v in variants() if v["role"] in PER_MEMBER]
    return render(tmp_path_factory.mktemp("rendered-default-endpoint"), k3s_variants)


@pytest.mark.parametrize(
    "template", sorted(ROLES_DIR.glob("*/templates/*.j2")), ids=lambda p: f"{p.parts[-3]}/{p.name}"
)
def test_every_template_renders_for_every_host_and_os(rendered, template):
    role, name = template.parts[-3], template.name.removesuffix(".j2")
    outputs = {
        f"{host}:{variant}": texts[name]
        for host, by_variant in rendered.items()
        for variant, texts in by_variant.items()
        if variant.startswith(f"{role}/")
    }
    assert len(outputs) == sum(len(v["hosts"]) for v in variants() if v["role"] == role)
    for output, text in outputs.items():
        assert "Ansible managed" in "".join(text.splitlines()[:3]), f"{output}: no ansible_managed header"
        if name.endswith((".yaml", ".yml")):
            assert isinstance(yaml.safe_load(text), dict), output
        elif name.endswith(".xml"):
            ElementTree.fromstring(text)
        elif name.endswith(".service"):
            assert "[Service]" in text and "ExecStart=" in text, output


def k3s_config(rendered: dict, host: str) -> dict:
    return yaml.safe_load(rendered[host]["k3s/any"]["config.yaml"])


def public_addresses_named(rendered: dict) -> dict[str, list[str]]:
    """For each rendered file ("<host> <role/os> <template>") the SSH-only addresses its text names."""
    pattern = re.compile(r"(?<![0-9.])(" + "|".join(re.escape(a) for a in PUBLIC.values()) + r")(?![0-9])")
    return {
        f"{host} {variant} {name}": found
        for host, by_variant in rendered.items()
        for variant, texts in by_variant.items()
        for name, text in texts.items()
        if (found := pattern.findall(text))
    }


@pytest.mark.parametrize("fixture", ["rendered", "rendered_default_endpoint"])
def test_no_template_names_an_address_ansible_alone_uses(request, fixture):
    rendered = request.getfixturevalue(fixture)
    assert sum(len(texts) for by_variant in rendered.values() for texts in by_variant.values()) > 0
    assert public_addresses_named(rendered) == {}, "ansible_host is the SSH address, not the cluster's"


@pytest.mark.parametrize("host", HOSTS)
def test_each_node_announces_its_cluster_address_or_lets_k3s_pick(rendered, host):
    config = k3s_config(rendered, host)
    if host not in PUBLIC:
        assert "node-ip" not in config and "advertise-address" not in config, (
            "without cluster_address or k3s_node_ip, k3s picks the default route's address"
        )
        return
    assert config["node-ip"] == HOSTS[host]
    assert config["advertise-address"] == HOSTS[host]


def test_the_api_endpoint_defaults_to_the_first_servers_cluster_address(rendered_default_endpoint):
    first = HOSTS["server1"]
    assert k3s_config(rendered_default_endpoint, "agent1")["server"] == f"https://{first}:6443"
    for server in ("server1", "server2", "server3"):
        assert k3s_config(rendered_default_endpoint, server)["tls-san"][0] == first


@pytest.mark.parametrize("host", HOSTS)
def test_k3s_config_holds_only_flags_k3s_knows(rendered, host):
    fake = fake_k3s()
    allowed = fake.SERVER_KEYS if host.startswith("server") else fake.AGENT_KEYS
    assert set(k3s_config(rendered, host)) <= allowed, set(k3s_config(rendered, host)) - allowed


def test_first_server_initialises_the_cluster(rendered):
    config = k3s_config(rendered, "server1")
    assert config["cluster-init"] is True and "server" not in config
    assert config["tls-san"][0] == ENDPOINT


@pytest.mark.parametrize("host", ["server2", "server3"])
def test_other_servers_join_the_first_server_directly(rendered, host):
    config = k3s_config(rendered, host)
    assert config["server"] == f"https://{HOSTS['server1']}:6443" and "cluster-init" not in config


def test_agents_join_through_the_api_endpoint_with_their_labels_and_taints(rendered):
    config = k3s_config(rendered, "agent1")
    assert config["server"] == f"https://{ENDPOINT}:6443"
    assert config["node-label"] == ["nvidia.com/gpu.present=true"]
    assert config["node-taint"] == ["nvidia.com/gpu=present:NoSchedule"]
    assert "kube-apiserver-arg" not in config and "cluster-init" not in config


@pytest.mark.parametrize("host", HOSTS)
def test_no_config_yaml_carries_the_token_itself(rendered, host):
    config = k3s_config(rendered, host)
    assert "token" not in config and config["token-file"] == "/etc/rancher/k3s/cluster-token"
