"""The GPU nodes as playbooks/gpu.yml left them (after converge and the idempotence run).

The packages come from fake_nvidia_repository, a test double of NVIDIA's signed apt repositories with two
driver branches, so what is installed is what the role's sources, keys, apt pin and package choices make
apt install. gpu1 and gpu2 take opposite choices (molecule.yml).
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from conftest import inventory_host, inventory_hosts

testinfra_hosts = inventory_hosts("gpu_nodes")
PINNED = "580.95.05-1"  # the newest version of the default branch 580 in fake_nvidia_repository
NEWER_BRANCH = "590.44.01-1"


@pytest.fixture
def gpu(settings) -> dict:
    """The nvidia_gpu settings of this host (role defaults, then its inventory variables)."""
    return settings("nvidia_gpu")


def installed_version(host, package: str) -> str | None:
    # Status is "<wanted> <error flag> <state>": "install ok installed", or "hold ok installed" when held.
    result = host.run(f"dpkg-query -W -f='${{Status}} ${{Version}}' {package}")
    fields = result.stdout.split()
    if result.rc != 0 or fields[1:3] != ["ok", "installed"]:
        return None
    return fields[3]


def test_the_repositories_are_signed_sources_with_their_own_keys(host, gpu):
    names = ["nvidia-cuda"] + (["nvidia-container-toolkit"] if gpu["nvidia_gpu_container_toolkit"] else [])
    for name in names:
        sources = dict(
            line.split(": ", 1)
            for line in host.file(f"/etc/apt/sources.list.d/{name}.sources").content_string.splitlines()
            if ": " in line
        )
        key = host.file(sources["Signed-By"])
        assert key.exists and key.mode == 0o644, f"{name}: key {sources['Signed-By']}"
        assert key.content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        assert sources["URIs"].startswith("http://127.0.0.1:8089/") and sources["Suites"] == "/"
    # apt verified the signatures: it lists packages only from repositories it trusts.
    assert "http://127.0.0.1:8089/cuda" in host.check_output("apt-cache policy nvidia-driver-cuda")
    if not gpu["nvidia_gpu_container_toolkit"]:
        assert not host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").exists


def test_the_driver_comes_from_the_pinned_branch_although_a_newer_one_is_offered(host, gpu):
    meta = "nvidia-open" if gpu["nvidia_gpu_kernel_modules"] == "open" else "cuda-drivers"
    assert installed_version(host, meta) == PINNED
    assert installed_version(host, "nvidia-driver-cuda") == PINNED
    policy = host.check_output(f"apt-cache policy {meta}")
    assert NEWER_BRANCH in policy, "the double offers no newer branch, the pin is not tested"
    assert re.search(rf"Candidate: {re.escape(PINNED)}", policy), policy
    upgrade = host.check_output("apt-get -s dist-upgrade")
    assert not re.search(r"^Inst (nvidia|libnvidia|cuda-drivers)", upgrade, re.M), upgrade


def test_the_kernel_modules_are_the_chosen_kind(host, gpu):
    open_modules = gpu["nvidia_gpu_kernel_modules"] == "open"
    assert (installed_version(host, "nvidia-kernel-open-dkms") is not None) == open_modules
    assert (installed_version(host, "nvidia-kernel-dkms") is not None) == (not open_modules)
    assert (installed_version(host, "cuda-drivers") is not None) == (not open_modules)


def test_the_kernel_guard_keeps_a_module_buildable_for_every_kernel(host, gpu):
    kernel = host.check_output("uname -r")
    running = f"linux-headers-{kernel}"
    meta = f"linux-headers-{host.check_output('dpkg --print-architecture')}"
    held = host.check_output("apt-mark showhold").split()
    assert installed_version(host, running) is not None, f"{running} is missing"
    if gpu["nvidia_gpu_kernel_guard"] == "dkms":
        # Every later kernel arrives with its headers, so DKMS can build the module for it.
        assert installed_version(host, meta) is not None, f"{meta} is missing (dkms guard)"
        assert held == []
    else:
        assert installed_version(host, meta) is None
        assert running in held, f"versionlock guard: {running} not held ({held})"


def test_the_container_toolkit_gives_k3s_the_nvidia_runtime(host, gpu):
    runtime = host.run("command -v nvidia-container-runtime")
    if gpu["nvidia_gpu_container_toolkit"]:
        assert installed_version(host, "nvidia-container-toolkit") is not None
        # k3s finds the runtime on PATH (or in /usr/bin) when it starts and adds it to its containerd.
        assert runtime.rc == 0 and runtime.stdout.strip() == "/usr/bin/nvidia-container-runtime"
    else:
        assert installed_version(host, "nvidia-container-toolkit") is None and runtime.rc != 0


def test_persistenced_is_installed_and_nouveau_blacklisted(host):
    assert installed_version(host, "nvidia-persistenced") == PINNED
    blacklist = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert blacklist.mode == 0o644
    assert {"blacklist nouveau", "options nouveau modeset=0"} <= set(blacklist.content_string.splitlines())


def test_the_device_plugin_configuration_carries_the_mig_and_sharing_settings(host, gpu):
    config = yaml.safe_load(host.file("/etc/nvidia-device-plugin/config.yaml").content_string)
    assert config["version"] == "v1"
    assert config["flags"] == {"migStrategy": gpu["nvidia_gpu_mig_strategy"], "failOnInitError": True}
    if gpu["nvidia_gpu_sharing_strategy"] == "time-slicing":
        resources = config["sharing"]["timeSlicing"]["resources"]
        assert resources == [{"name": "nvidia.com/gpu", "replicas": gpu["nvidia_gpu_time_slicing_replicas"]}]
    else:
        assert "sharing" not in config


def test_nvidia_is_the_default_runtime_of_k3s_only_where_asked(host, gpu):
    dropin = host.file("/etc/rancher/k3s/config.yaml.d/50-nvidia.yaml")
    if gpu["nvidia_gpu_k3s_default_runtime"]:
        assert dropin.mode == 0o600 and dropin.user == "root"
        assert yaml.safe_load(dropin.content_string) == {"default-runtime": "nvidia"}
    else:
        assert not dropin.exists


def test_k3s_was_restarted_once_when_the_toolkit_arrived_and_not_by_the_rerun(host, gpu):
    starts = host.file("/var/lib/k3s-agent-standin/starts")
    if not host.ansible.get_variables()["fake_k3s_running"]:
        assert not starts.exists
        return
    # One start by prepare.yml, one restart by converge (toolkit and drop-in notify one handler), none by
    # the idempotence run.
    assert len(starts.content_string.split()) == 2, starts.content_string
    assert host.service("k3s-agent").is_running


def run_gpu_playbook(*args: str) -> subprocess.CompletedProcess[str]:
    """playbooks/gpu.yml on the scenario's inventory and configuration, as molecule runs it."""
    ephemeral = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    playbook = pathlib.Path(__file__).resolve().parents[3] / "playbooks" / "gpu.yml"
    return subprocess.run(
        [
            str(pathlib.Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(ephemeral / "inventory"),
            *args,
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg")},
        timeout=600,
        check=False,
    )


def test_check_mode_reports_the_plan_for_a_fresh_node_and_changes_nothing(tmp_path):
    """gpu.yml --check on the converged nodes and on the fresh gpu3 (added to gpu_nodes for this run)."""
    (fresh,) = inventory_hosts("gpu_fresh")
    extra = tmp_path / "fresh.yml"
    extra.write_text(yaml.safe_dump({"gpu_nodes": {"hosts": {fresh: None}}}))
    process = run_gpu_playbook("-i", str(extra), "--check", "--diff")
    said = " ".join(process.stdout.split())
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    recap = dict(re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", process.stdout, re.M))
    assert {name: recap.get(name) for name in testinfra_hosts} == dict.fromkeys(testinfra_hosts, "0"), recap
    assert int(recap[fresh]) > 0, "check mode found nothing to do on a fresh node"
    assert "Check mode: the NVIDIA repositories are new; would install the driver branch 580" in said
    written = inventory_host(fresh).run(
        "ls /etc/apt/sources.list.d/nvidia-cuda.sources /etc/nvidia-device-plugin /etc/modprobe.d/blacklist-nouveau.conf"
    )
    assert written.rc != 0 and not written.stdout.strip(), f"check mode wrote on {fresh}: {written.stdout}"


def test_a_first_run_stopped_before_apt_read_the_sources_is_finished_by_the_next_run():
    """What a first run leaves when it stops after writing NVIDIA's sources, before apt refreshed its lists
    (made on gpu2: its driver removed, the lists of the driver repository deleted). The sources are then
    unchanged for the next run, which must refresh the lists itself and install the driver."""
    node = inventory_host("gpu2")
    repo = node.ansible.get_variables()["nvidia_gpu_repo_url"].split("://", 1)[1].rstrip("/")
    lists = repo.replace("/", "_") + "_*"
    broken = node.run(
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q nvidia-driver-cuda"
        f" && find /var/lib/apt/lists -maxdepth 1 -name '{lists}' -print -delete"
    )
    assert broken.rc == 0 and "InRelease" in broken.stdout, f"no lists of {repo} deleted: {broken}"
    assert installed_version(node, "nvidia-driver-cuda") is None
    assert node.run("apt-cache show nvidia-driver-cuda").rc != 0, (
        "apt still knows the driver: nothing was undone"
    )
    process = run_gpu_playbook("--limit", "gpu2")
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    assert installed_version(node, "nvidia-driver-cuda") == PINNED
    assert installed_version(node, "cuda-drivers") == PINNED
