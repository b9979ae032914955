"""Host configuration: the generated inventory, the re-run trigger, the kubeconfig, and the script
that runs Ansible (executed for real, with fake ``ansible``/``ansible-playbook`` binaries)."""

from __future__ import annotations

import pathlib
import shutil
import stat
import subprocess
import sys

import pytest
import yaml

from infra.components.host_configuration import SCRIPT
from infra.specs import inventory
from tests.infra.program import FAKE_KUBECONFIG, ProgramRun
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
