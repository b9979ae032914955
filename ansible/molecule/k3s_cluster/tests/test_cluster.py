"""The cluster site.yml built: units, release, configuration, token, join order, firewall, kubeconfig.

Runs after side_effect.yml (upgrade, snapshot, restore), so versions are the upgrade target. What the
fake_k3s_release test double reports (members, join order, Ready) is what the roles made it do: it only
accepts a node whose config.yaml, token file and firewall let it reach the first server.
"""

import hashlib
import json
import pathlib
import time

import pytest
import yaml
from conftest import inventory_host, inventory_hosts

testinfra_hosts = inventory_hosts("all")
SERVERS = inventory_hosts("k3s_servers")
AGENTS = inventory_hosts("k3s_agents")
FIRST = SERVERS[0]


@pytest.fixture
def cluster_vars(scenario_vars) -> dict:
    return scenario_vars(
        "molecule_artifacts",
        "k3s_upgrade_version",
        first_server_address=f"hostvars['{FIRST}']['ansible_host']",
    )


@pytest.fixture
def node_config(host, read_file) -> dict:
    assert host.file("/etc/rancher/k3s/config.yaml").mode == 0o600
    return yaml.safe_load(read_file("/etc/rancher/k3s/config.yaml"))


def kubectl_json(*args: str) -> dict:
    result = inventory_host(FIRST).run("/usr/local/bin/k3s kubectl " + " ".join(args) + " -o json")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def wait_for_ready_nodes(expected: list[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        nodes = {item["metadata"]["name"]: item for item in kubectl_json("get", "nodes")["items"]}
        ready = [n for n, item in nodes.items() if item["status"]["conditions"][0]["status"] == "True"]
        if sorted(ready) == sorted(expected) or time.monotonic() > deadline:
            return nodes
        time.sleep(2)


def test_each_node_runs_the_k3s_unit_of_its_role(host, assert_running):
    name = host.backend.get_hostname()
    assert_running("k3s" if name in SERVERS else "k3s-agent")


def test_installed_binary_is_the_verified_release(host, cluster_vars):
    release = (
        pathlib.Path(cluster_vars["molecule_artifacts"])
        / "fake_k3s_release"
        / cluster_vars["k3s_upgrade_version"]
    )
    published = dict(
        line.split()[::-1] for line in (release / "sha256sum-amd64.txt").read_text().splitlines()
    )
    binary = host.file("/usr/local/bin/k3s")
    assert binary.mode == 0o755 and binary.user == "root"
    assert binary.sha256sum == published["k3s"]
    assert host.file("/usr/local/bin/kubectl").linked_to == "/usr/local/bin/k3s"
    assert (
        host.file("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst").sha256sum
        == published["k3s-airgap-images-amd64.tar.zst"]
    )


def test_first_server_initialises_and_the_others_join_it(host, node_config, cluster_vars):
    name = host.backend.get_hostname()
    first_address = cluster_vars["first_server_address"]
    if name == FIRST:
        assert node_config.get("cluster-init") is True and "server" not in node_config
    elif name in SERVERS:
        assert node_config["server"] == f"https://{first_address}:6443" and "cluster-init" not in node_config
    else:
        assert node_config["server"] == f"https://{first_address}:6443", (
            "agents join through k3s_api_endpoint"
        )


def test_token_is_in_a_root_only_file_and_never_in_config_yaml(host, node_config):
    token = host.file("/etc/rancher/k3s/cluster-token")
    assert (token.user, token.mode) == ("root", 0o600)
    assert node_config["token-file"] == "/etc/rancher/k3s/cluster-token"
    assert "token" not in node_config


def test_every_node_has_the_token_stored_encrypted_on_the_controller(host, cluster_vars):
    from ansible.parsing.vault import VaultLib, VaultSecret

    artifacts = pathlib.Path(cluster_vars["molecule_artifacts"])
    stored = (artifacts / "k3s-token.vault").read_bytes()
    assert stored.startswith(b"$ANSIBLE_VAULT;"), "the controller copy of the token must be vault-encrypted"
    assert oct((artifacts / "k3s-token.vault").stat().st_mode & 0o777) == "0o600"
    secret = VaultSecret((artifacts / "vault-password").read_bytes().strip())
    token = VaultLib([("default", secret)]).decrypt(stored).strip()
    on_node = host.file("/etc/rancher/k3s/cluster-token").content.strip()
    assert hashlib.sha256(on_node).hexdigest() == hashlib.sha256(token).hexdigest(), (
        "node token differs from the stored one"
    )


def test_servers_run_with_the_cis_hardening_of_the_k3s_guide(host, node_config):
    if host.backend.get_hostname() not in SERVERS:
        pytest.skip("agents have no control plane (checked: kubelet arguments in the next test)")
    assert node_config["protect-kernel-defaults"] is True
    assert node_config["secrets-encryption"] is True
    apiserver = node_config["kube-apiserver-arg"]
    assert "enable-admission-plugins=NodeRestriction,EventRateLimit" in apiserver
    assert "admission-control-config-file=/var/lib/rancher/k3s/server/psa.yaml" in apiserver
    assert "audit-policy-file=/var/lib/rancher/k3s/server/audit.yaml" in apiserver
    for path in ("/var/lib/rancher/k3s/server/psa.yaml", "/var/lib/rancher/k3s/server/audit.yaml"):
        assert host.file(path).mode == 0o600, path
    psa = yaml.safe_load(host.file("/var/lib/rancher/k3s/server/psa.yaml").content_string)
    assert [plugin["name"] for plugin in psa["plugins"]] == ["PodSecurity", "EventRateLimit"]
    assert host.file("/var/lib/rancher/k3s/server/logs").mode == 0o700
    assert node_config["etcd-snapshot-schedule-cron"] and node_config["etcd-snapshot-retention"] > 0
    assert "api.mlstack.test" in node_config["tls-san"]


def test_every_kubelet_gets_the_cis_arguments(node_config):
    assert "streaming-connection-idle-timeout=5m" in node_config["kubelet-arg"]
    assert any(arg.startswith("tls-cipher-suites=") for arg in node_config["kubelet-arg"])
    assert node_config["protect-kernel-defaults"] is True


def test_cluster_lists_the_nodes_in_join_order_all_ready():
    nodes = wait_for_ready_nodes(SERVERS + AGENTS)
    assert list(nodes) == SERVERS + AGENTS, (
        "the first server initialised, the others joined in inventory order"
    )
    not_ready = [n for n, item in nodes.items() if item["status"]["conditions"][0]["status"] != "True"]
    assert not not_ready, f"not Ready: {not_ready}"


def test_gpu_node_carries_the_labels_and_taints_of_the_inventory():
    node = kubectl_json("get", "node", AGENTS[0])
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_kubeconfig_reaches_the_controller_pointing_at_the_api_endpoint(cluster_vars):
    path = pathlib.Path(cluster_vars["molecule_artifacts"]) / "kubeconfig"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    config = yaml.safe_load(path.read_text())
    endpoint = cluster_vars["first_server_address"]
    assert [c["cluster"]["server"] for c in config["clusters"]] == [f"https://{endpoint}:6443"]
