"""Host configuration: the generated inventory, the re-run trigger, the kubeconfig, and the script
that runs Ansible (executed for real, with fake ``ansible``/``ansible-playbook`` binaries)."""

from __future__ import annotations

import ipaddress
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from infra.components.host_configuration import SCRIPT
from infra.config import ConfigError, parse
from infra.specs import inventory
from tests.infra.program import FAKE_KUBECONFIG, ProgramRun, run_program, stack_settings
from tests.support import interfaces

pytestmark = pytest.mark.xdist_group(name="infra-program")
CONNECTION_VARIABLES = {"ansible_host", "ansible_user"}
CLUSTER = inventory.ClusterSettings(
    k3s_version="v1.33.5+k3s1",
    api_endpoint="10.0.0.1",
    tls_sans=("api.example.com",),
    nvidia_driver_branch="580",
)
HOSTS = [
    inventory.InventoryHost(
        "server-1", "203.0.113.1", "10.0.0.1", "ec2-user", ("k3s_servers", "hdfs_namenodes")
    ),
    inventory.InventoryHost(
        "gpu-1",
        "203.0.113.2",
        "10.0.0.2",
        "ec2-user",
        ("k3s_agents", "gpu_nodes", "hdfs_datanodes", "kafka_brokers"),
        hdfs_data_dirs=("/data/hdfs",),
        kafka_log_dirs=("/data/kafka",),
    ),
]


def all_variables(document: dict) -> set[str]:
    found = set(document["all"]["vars"])
    for variables in document["all"]["hosts"].values():
        found |= set(variables)
    for group in document["all"]["children"].values():
        found |= set(group.get("vars", {}))
    return found


def test_the_inventory_uses_the_contract_groups_and_sets_only_the_contract_variables():
    document = inventory.build_inventory(HOSTS, CLUSTER)
    assert set(document["all"]["children"]) <= set(interfaces.names("Ansible groups"))
    assert all_variables(document) <= interfaces.inventory_variables() | CONNECTION_VARIABLES
    assert "k3s_token" not in all_variables(document)


def test_groups_list_their_members_and_variables_land_at_their_documented_scope():
    document = inventory.build_inventory(HOSTS, CLUSTER)["all"]
    assert document["children"]["gpu_nodes"] == {
        "hosts": {"gpu-1": None},
        "vars": {"nvidia_driver_branch": "580"},
    }
    assert document["children"]["k3s_servers"]["vars"] == {"k3s_tls_sans": ["api.example.com"]}
    assert document["vars"] == {"k3s_version": "v1.33.5+k3s1", "k3s_api_endpoint": "10.0.0.1"}
    gpu = document["hosts"]["gpu-1"]
    assert gpu["k3s_node_labels"] == ["nvidia.com/gpu.present=true"]
    assert gpu["k3s_node_taints"] == ["nvidia.com/gpu=present:NoSchedule"]
    assert gpu["hdfs_datanode_data_dirs"] == ["/data/hdfs"] and gpu["kafka_log_dirs"] == ["/data/kafka"]
    assert "k3s_node_labels" not in document["hosts"]["server-1"]


def test_the_program_generates_the_inventory_from_node_outputs(run: ProgramRun):
    document = yaml.safe_load(run.exports["inventory"][0])
    hosts = document["all"]["hosts"]
    addresses = run.exports["nodes"][0]
    assert {name: v["ansible_host"] for name, v in hosts.items()} == addresses
    assert all_variables(document) <= interfaces.inventory_variables() | CONNECTION_VARIABLES
    assert document["all"]["children"]["k3s_servers"]["hosts"]
    assert document["all"]["vars"]["k3s_api_endpoint"]


def test_every_host_carries_its_cluster_address_beside_its_ssh_address():
    hosts = inventory.build_inventory(HOSTS, CLUSTER)["all"]["hosts"]
    assert {name: (v["ansible_host"], v["cluster_address"]) for name, v in hosts.items()} == {
        "server-1": ("203.0.113.1", "10.0.0.1"),
        "gpu-1": ("203.0.113.2", "10.0.0.2"),
    }


def test_aws_nodes_reach_each_other_at_their_private_addresses_and_ansible_at_the_public_ones(aws_run):
    """The security group's node-to-node rules match traffic between private addresses only."""
    document = yaml.safe_load(aws_run.exports["inventory"][0])["all"]
    hosts = document["hosts"]
    vpc = ipaddress.ip_network(stack_settings("aws-example")["mlstack:aws"]["vpcCidr"])
    private = {name: v["cluster_address"] for name, v in hosts.items()}
    assert all(ipaddress.ip_address(address) in vpc for address in private.values()), private
    assert len(set(private.values())) == len(hosts), f"cluster addresses repeat: {private}"
    for name, variables in hosts.items():
        assert ipaddress.ip_address(variables["ansible_host"]) not in vpc, (
            f"{name}: SSH goes to the public IP"
        )
    first_server = next(iter(document["children"]["k3s_servers"]["hosts"]))
    assert document["vars"]["k3s_api_endpoint"] == private[first_server]
    public = hosts[first_server]["ansible_host"]
    assert public in document["children"]["k3s_servers"]["vars"]["k3s_tls_sans"], (
        "the kubeconfig reaches the API at the public address, so the certificate must name it"
    )
    kubeconfig = yaml.safe_load(aws_run.exports["kubeconfig"][0])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{public}:6443"


def test_existing_hosts_are_reached_by_the_others_at_their_private_address(baremetal_run):
    hosts = yaml.safe_load(baremetal_run.exports["inventory"][0])["all"]["hosts"]
    configured = stack_settings("baremetal-example")["mlstack:hosts"]
    assert {name: v["cluster_address"] for name, v in hosts.items()} == {
        host["name"]: host.get("privateAddress", host["address"]) for host in configured
    }


def test_the_inventory_rejects_unknown_groups_and_duplicate_hosts():
    with pytest.raises(ValueError, match="unknown groups \\['etcd'\\]"):
        inventory.build_inventory([inventory.InventoryHost("a", "1", "1", "u", ("etcd",))], CLUSTER)
    with pytest.raises(ValueError, match="unique"):
        inventory.build_inventory([HOSTS[0], HOSTS[0]], CLUSTER)


def test_the_content_hash_changes_with_roles_and_variables_but_not_with_molecule_files(
    tmp_path, ansible_project
):
    tree = tmp_path / "ansible"
    shutil.copytree(ansible_project, tree)
    before = inventory.tree_digest(tree)
    (tree / "roles/k3s_server/molecule/default/molecule.yml").write_text("driver: {name: podman}\n")
    assert inventory.tree_digest(tree) == before, "molecule scenarios do not change what the playbooks do"
    (tree / "roles/k3s_server/tasks/main.yml").write_text("- name: changed\n  ansible.builtin.meta: noop\n")
    after_task = inventory.tree_digest(tree)
    assert after_task != before
    (tree / "roles/k3s_server/defaults").mkdir()
    (tree / "roles/k3s_server/defaults/main.yml").write_text("k3s_server_x: 1\n")
    assert inventory.tree_digest(tree) not in (before, after_task)


def test_the_ansible_command_is_triggered_by_the_content_hash_and_keeps_stdout_out_of_logs(
    run: ProgramRun, ansible_project
):
    (command,) = run.of_type("command:local:Command")
    assert command.inputs["triggers"] == [inventory.tree_digest(ansible_project)]
    assert command.inputs["logging"] == "stderr"
    assert command.inputs["create"] == SCRIPT.read_text() == command.inputs["update"]
    assert command.inputs["interpreter"] == ["/bin/bash", "-c"]


def test_the_kubeconfig_is_pointed_at_the_reachable_endpoint():
    rewritten = yaml.safe_load(inventory.kubeconfig_with_server(FAKE_KUBECONFIG, "https://203.0.113.9:6443"))
    assert rewritten["clusters"][0]["cluster"]["server"] == "https://203.0.113.9:6443"
    assert rewritten["users"] == yaml.safe_load(FAKE_KUBECONFIG)["users"]
    with pytest.raises(ValueError, match="no clusters"):
        inventory.kubeconfig_with_server("apiVersion: v1\nkind: Config\n", "https://x:6443")


# fake_ansible / fake_ansible_playbook: stand-ins for Ansible that record how they were called and
# what the vars file held, and (the playbook) write a kubeconfig where k3s_kubeconfig_dest points.
FAKE_ANSIBLE = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0") $*" >>"$FAKE_LOG"
# Every command: its SSH options (a line per call), the pinned host keys (content, mode, path) and whether
# Ansible's host key checking was forced on.
previous=
for arg in "$@"; do
  if [ "$previous" = --ssh-common-args ]; then
    printf '%s\\n' "$arg" >>"$FAKE_DIR/ssh-args"
    file=$(printf '%s' "$arg" | sed -n 's/.*UserKnownHostsFile=\\([^ ]*\\).*/\\1/p')
    if [ -n "$file" ]; then
      stat -c '%a' "$file" >"$FAKE_DIR/known-hosts-mode"
      cat "$file" >"$FAKE_DIR/known-hosts-copy"
      echo "$file" >"$FAKE_DIR/known-hosts-path"
    fi
  fi
  previous=$arg
done
printf '%s\\n' "${ANSIBLE_HOST_KEY_CHECKING:-unset}" >>"$FAKE_DIR/host-key-checking"
if [ "$(basename "$0")" = ansible-playbook ]; then
  echo "PLAY RECAP (this must not reach stdout)"
  while [ $# -gt 0 ]; do
    case "$1" in
      -e)
        shift
        case "$1" in
          @*) file=${1#@}; stat -c '%a' "$file" >>"$FAKE_LOG"; cat "$file" >"$FAKE_DIR/vars-copy"; echo "$file" >"$FAKE_DIR/vars-path" ;;
          k3s_kubeconfig_dest=*) [ -n "$FAKE_WRITE_KUBECONFIG" ] && printf '%s' "$FAKE_WRITE_KUBECONFIG" >"${1#k3s_kubeconfig_dest=}" ;;
        esac ;;
      --private-key) shift; stat -c '%a' "$1" >>"$FAKE_LOG" ;;
    esac
    shift
  done
fi
"""


@pytest.fixture
def fake_ansible(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ansible", "ansible-playbook"):
        (bin_dir / name).write_text(FAKE_ANSIBLE)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_script(tmp_path, fake_ansible, ansible_project, **overrides):
    env = {
        "PATH": f"{fake_ansible}:/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_DIR": str(tmp_path),
        "FAKE_WRITE_KUBECONFIG": FAKE_KUBECONFIG,
        "MLSTACK_ANSIBLE_DIR": str(ansible_project),
        "MLSTACK_INVENTORY": inventory.render_inventory(inventory.build_inventory(HOSTS, CLUSTER)),
        "MLSTACK_SECRET_VARS": "k3s_token: s3cr3t-t0ken\n",
        "MLSTACK_SSH_PRIVATE_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n",
        "MLSTACK_WAIT_FOR_CLOUD_INIT": "true",
        **overrides,
    }
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_the_script_runs_the_site_playbook_with_secrets_in_a_0600_file_and_prints_only_the_kubeconfig(
    tmp_path, fake_ansible, ansible_project
):
    result = run_script(tmp_path, fake_ansible, ansible_project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == FAKE_KUBECONFIG
    assert "PLAY RECAP" in result.stderr
    calls = (tmp_path / "calls.log").read_text()
    assert "s3cr3t-t0ken" not in calls and "PRIVATE KEY" not in calls, "a secret reached a command line"
    assert calls.splitlines().count("600") == 2, (
        "the vars file and the SSH key are readable by their owner only"
    )
    assert "playbooks/site.yml" in calls
    assert yaml.safe_load((tmp_path / "vars-copy").read_text()) == {"k3s_token": "s3cr3t-t0ken"}
    assert not pathlib.Path((tmp_path / "vars-path").read_text().strip()).exists(), (
        "the secrets file was removed"
    )
    assert (
        calls.index("wait_for_connection")
        < calls.index("cloud-init status --wait")
        < calls.index("ansible-playbook")
    )


def test_the_script_skips_the_cloud_init_wait_for_existing_hosts(tmp_path, fake_ansible, ansible_project):
    result = run_script(
        tmp_path,
        fake_ansible,
        ansible_project,
        MLSTACK_WAIT_FOR_CLOUD_INIT="false",
        MLSTACK_SSH_PRIVATE_KEY="",
    )
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text()
    assert "cloud-init" not in calls and "--private-key" not in calls


def host_key_line(host: str) -> str:
    """A known_hosts line for ``host`` with a freshly generated Ed25519 key, as ssh-keyscan prints it."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return (
        f"{host} "
        + key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    )


KNOWN_HOSTS = (
    "# server-1 and gpu-1\n" + host_key_line("203.0.113.1") + "\n" + host_key_line("203.0.113.2,gpu-1")
)


def pinned_options(known_hosts: str) -> str:
    return (
        f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null"
    )


@pytest.mark.skipif(
    shutil.which("ssh") is None, reason="needs the OpenSSH client (ssh -G) to read the options"
)
def test_ssh_reads_the_pinned_options_as_checking_against_that_file_only():
    resolved = subprocess.run(
        ["ssh", "-G", *pinned_options("/run/mlstack/known_hosts").split(), "203.0.113.1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    wanted = {
        "stricthostkeychecking true",
        "userknownhostsfile /run/mlstack/known_hosts",
        "globalknownhostsfile /dev/null",
    }
    assert wanted <= set(resolved)


def test_the_script_accepts_a_host_key_on_first_contact_when_the_stack_pins_none(
    tmp_path, fake_ansible, ansible_project
):
    result = run_script(tmp_path, fake_ansible, ansible_project)
    assert result.returncode == 0, result.stderr
    options = (tmp_path / "ssh-args").read_text().splitlines()
    assert options == ["-o StrictHostKeyChecking=accept-new"] * 3, "wait, cloud-init and the playbook"
    assert not (tmp_path / "known-hosts-copy").exists()


def test_the_script_trusts_only_the_pinned_host_keys_when_the_stack_has_them(
    tmp_path, fake_ansible, ansible_project
):
    result = run_script(
        tmp_path,
        fake_ansible,
        ansible_project,
        MLSTACK_SSH_KNOWN_HOSTS=KNOWN_HOSTS,
        ANSIBLE_HOST_KEY_CHECKING="False",
    )
    assert result.returncode == 0, result.stderr
    path = (tmp_path / "known-hosts-path").read_text().strip()
    assert pathlib.Path(path).parent.name.startswith("mlstack-ansible."), "in the run's private directory"
    expected = pinned_options(path)
    assert (tmp_path / "ssh-args").read_text().splitlines() == [expected] * 3
    assert (tmp_path / "known-hosts-copy").read_text() == KNOWN_HOSTS + "\n"
    assert (tmp_path / "known-hosts-mode").read_text().strip() == "600"
    assert not pathlib.Path(path).exists(), "the known_hosts file was removed with the workdir"
    assert set((tmp_path / "host-key-checking").read_text().split()) == {"True"}, (
        "Ansible's own StrictHostKeyChecking=no would come first and win"
    )


def test_the_pinned_host_keys_reach_the_script_through_the_commands_environment(ansible_project):
    run, error, _ = run_program(
        "baremetal-example",
        {"mlstack:ansibleDir": str(ansible_project), "mlstack:sshKnownHosts": KNOWN_HOSTS},
    )
    assert error is None, error
    (command,) = run.of_type("command:local:Command")
    assert command.inputs["environment"]["MLSTACK_SSH_KNOWN_HOSTS"] == KNOWN_HOSTS


def test_without_pinned_host_keys_the_command_sets_none(baremetal_run):
    (command,) = baremetal_run.of_type("command:local:Command")
    assert "MLSTACK_SSH_KNOWN_HOSTS" not in command.inputs["environment"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("203.0.113.1 ssh-ed25519", "line 1: 2 fields where host, key type and key are needed"),
        (
            "# ok\n203.0.113.1 ssh-dss AAAAB3NzaC1kc3M=",
            "line 2: key type 'ssh-dss' is not one of ssh-ed25519",
        ),
        (
            "203.0.113.1 ssh-ed25519 not-base64!",
            "line 1: the key is not the base64 of a ssh-ed25519 public key",
        ),
        (
            host_key_line("203.0.113.1").replace("ssh-ed25519", "ssh-rsa"),
            "not the base64 of a ssh-rsa public",
        ),
        (
            "203.0.113.1;rm ssh-ed25519 AAAA",
            "line 1: '203.0.113.1;rm' is not a host name, address or pattern",
        ),
    ],
    # Fixed ids: the fourth case holds a key generated at collection, and pytest-xdist's workers must
    # collect the same names.
    ids=["too-few-fields", "unknown-key-type", "not-base64", "key-of-another-type", "not-a-host"],
)
def test_a_malformed_known_hosts_line_is_named_with_the_key_and_the_format(text, problem):
    values = {
        k.split(":", 1)[1]: v for k, v in stack_settings("aws-example").items() if k.startswith("mlstack:")
    }
    with pytest.raises(ConfigError) as raised:
        parse({**values, "sshKnownHosts": text})
    message = str(raised.value)
    assert message.startswith("mlstack:sshKnownHosts: ") and problem in message
    assert "'host[,host] keytype base64key'" in message


def test_known_hosts_lines_as_ssh_keyscan_prints_them_are_accepted():
    values = {
        k.split(":", 1)[1]: v for k, v in stack_settings("aws-example").items() if k.startswith("mlstack:")
    }
    hashed = "|1|c2FsdHNhbHRzYWx0c2FsdA==|aGFzaGhhc2hoYXNoaGFzaA== " + host_key_line("x").split(" ", 1)[1]
    text = f"{KNOWN_HOSTS}\n\n[gpu-1.example]:2222 {host_key_line('h').split(' ', 1)[1]} a comment\n{hashed}"
    assert parse({**values, "sshKnownHosts": text}).ssh_known_hosts == text
    assert parse(values).ssh_known_hosts == ""


def test_the_script_fails_clearly_when_the_playbooks_write_no_kubeconfig(
    tmp_path, fake_ansible, ansible_project
):
    result = run_script(tmp_path, fake_ansible, ansible_project, FAKE_WRITE_KUBECONFIG="")
    assert result.returncode == 1
    assert "did not write a kubeconfig to k3s_kubeconfig_dest" in result.stderr
    assert result.stdout == ""


def test_the_script_says_how_to_get_ansible_when_it_is_missing(tmp_path, ansible_project):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = run_script(tmp_path, empty, ansible_project)
    assert result.returncode == 127
    assert "ansible is not on PATH" in result.stderr and "source .venv/bin/activate" in result.stderr


def test_the_script_names_a_missing_site_playbook(tmp_path, fake_ansible):
    result = run_script(tmp_path, fake_ansible, tmp_path / "nowhere")
    assert result.returncode == 2
    assert "playbooks/site.yml not found (mlstack:ansibleDir)" in result.stderr


def test_the_script_is_executable_and_shellcheck_clean():
    assert SCRIPT.stat().st_mode & stat.S_IXUSR
    shellcheck = pathlib.Path(sys.executable).parent / "shellcheck"
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
