"""The nvidia_gpu role's checks, run on this machine (local connection, no privilege escalation):

- preflight (playbooks/preflight.yml) refuses bad GPU settings and an unsupported OS or architecture before any
  change, naming what to fix, and passes a valid GPU node. The OS cases read their facts from a fact cache
  holding this machine's facts with another distribution or architecture (gathering is smart: a cached host is
  not gathered again).
- the health check (tasks/health.yml) on a simulated GPU host: fake_nvidia_tools (TEST DOUBLES of
  nvidia-smi and modinfo, tests/support/), a stand-in /proc/driver/nvidia/version and a PCI probe that
  lists the simulated GPUs. A healthy host passes; a GPU nvidia-smi does not see, a driver of another
  branch, a driver not loaded, a loaded driver older than the installed one and a kernel without a module
  each stop the run saying what to do; MIG mode is turned on only where it is off and supported, and the
  pending reboot is reported; a host without a GPU skips the check, saying so.
- on a host with an NVIDIA GPU (`gpu` marker), the same health check against the real driver.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.ansible.support import (
    ANSIBLE_DIR,
    ROOT,
    PlaybookOutcome,
    assert_stopped_with,
    run_playbook_json,
)

PREFLIGHT = ANSIBLE_DIR / "playbooks" / "preflight.yml"
HEALTH = ROOT / "tests" / "ansible" / "playbooks" / "gpu_health.yml"
FAKE_TOOLS = ROOT / "tests" / "support" / "fake_nvidia_tools.py"
BRANCH = "580"
DRIVER = "580.95.05"
BUS_IDS = ["00000000:17:00.0", "00000000:65:00.0"]

# One ansible-playbook run each (5-15 s on a loaded 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gpu_node_checks")]


def gpu_node_inventory(*hosts: str, **variables) -> dict:
    entry = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
    }
    members = {host: entry for host in hosts or ["gpu1"]}
    return {"all": {"vars": variables, "children": {"gpu_nodes": {"hosts": members}}}}


# --- preflight -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fact_cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("facts")


def run_preflight(tmp_path, fact_cache: pathlib.Path, *hosts: str, **variables) -> PlaybookOutcome:
    return run_playbook_json(
        PREFLIGHT,
        gpu_node_inventory(*hosts, **variables),
        tmp_path,
        ANSIBLE_CACHE_PLUGIN="ansible.builtin.jsonfile",
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(fact_cache),
    )


def test_a_valid_gpu_node_passes_preflight(tmp_path, fact_cache):
    outcome = run_preflight(
        tmp_path, fact_cache, nvidia_gpu_sharing_strategy="time-slicing", nvidia_gpu_time_slicing_replicas=4
    )
    assert outcome.returncode == 0, outcome.failed


def test_bad_gpu_settings_are_all_named(tmp_path, fact_cache):
    # One run: the settings are items of one check, which names every failing item before the run stops.
    outcome = run_preflight(
        tmp_path,
        fact_cache,
        nvidia_gpu_driver_branch="latest",
        nvidia_gpu_sharing_strategy="time-slicing",
        nvidia_gpu_time_slicing_replicas=1,
        nvidia_gpu_mig_strategy="mixed",
    )
    assert_stopped_with(outcome, 'nvidia_gpu_driver_branch is "latest"', 'give a driver branch such as "580"')
    assert_stopped_with(outcome, "nvidia_gpu_time_slicing_replicas 1", "between 2 or more pods")
    assert_stopped_with(outcome, "nvidia_gpu_mig_strategy mixed and time-slicing do not combine")


def test_open_kernel_modules_on_a_branch_without_them_are_refused(tmp_path, fact_cache):
    outcome = run_preflight(tmp_path, fact_cache, nvidia_gpu_driver_branch="470")
    assert_stopped_with(
        outcome, "branch 470 has no open kernel modules", "nvidia_gpu_kernel_modules proprietary"
    )


def test_a_value_outside_the_argument_spec_is_refused_naming_the_variable(tmp_path, fact_cache):
    outcome = run_preflight(tmp_path, fact_cache, nvidia_gpu_kernel_guard="none")
    assert_stopped_with(outcome, "nvidia_gpu_kernel_guard", "dkms, versionlock")


OTHER_RELEASES = {
    "alma8": {
        "ansible_distribution": "AlmaLinux",
        "ansible_distribution_version": "8.10",
        "ansible_distribution_major_version": "8",
        "ansible_os_family": "RedHat",
    },
    "focal1": {
        "ansible_distribution": "Ubuntu",
        "ansible_distribution_version": "20.04",
        "ansible_distribution_major_version": "20",
        "ansible_os_family": "Debian",
    },
}


@pytest.fixture(scope="module")
def cache_facts(tmp_path_factory, fact_cache):
    """Cache this machine's facts, changed by `facts`, as those of `host`."""
    from ansible.plugins.loader import cache_loader, init_plugin_loader

    run_preflight(tmp_path_factory.mktemp("gather"), fact_cache)  # this machine's facts, cached as gpu1
    init_plugin_loader()
    cache = cache_loader.get("ansible.builtin.jsonfile", _uri=str(fact_cache))
    return lambda host, facts: cache.set(host, {**cache.get("gpu1"), **facts})


def test_an_architecture_without_nvidia_packages_is_refused(tmp_path, fact_cache, cache_facts):
    cache_facts("power1", {"ansible_architecture": "ppc64le"})
    outcome = run_preflight(tmp_path, fact_cache, "power1")
    assert_stopped_with(outcome, "power1 is in gpu_nodes but runs", "on ppc64le", "on x86_64 or aarch64")


def test_a_release_without_nvidia_packages_is_refused_on_every_such_host(tmp_path, fact_cache, cache_facts):
    # The host check every play starts with names the release before the GPU role is reached.
    for host, facts in OTHER_RELEASES.items():
        cache_facts(host, facts)
    outcome = run_preflight(tmp_path, fact_cache, *OTHER_RELEASES)
    assert_stopped_with(outcome.by_host["alma8"], "alma8 runs AlmaLinux 8.10", "RHEL 9, Debian 12")
    assert_stopped_with(outcome.by_host["focal1"], "focal1 runs Ubuntu 20.04", "Reinstall the host")


# --- health check on a simulated GPU host -------------------------------------------------------------


def gpu(index: int, driver: str = DRIVER, mig: str = "Disabled") -> dict:
    return {
        "index": index,
        "pci.bus_id": BUS_IDS[index % len(BUS_IDS)],
        "name": "NVIDIA H200",
        "driver_version": driver,
        "memory.total": "143771 MiB",
        "mig.mode.current": mig,
        "mig.mode.pending": mig,
    }


# The simulated hosts of the health check, all run by one ansible-playbook: {name: (state, role variables)}.
CASES: dict[str, tuple[dict, dict]] = {
    "healthy": ({}, {}),
    "gpu-unseen": ({"gpus": [gpu(0)]}, {}),
    "other-branch": (
        {"gpus": [gpu(0, "575.57.08"), gpu(1, "575.57.08")], "module": "575.57.08", "loaded": "575.57.08"},
        {},
    ),
    "not-loaded": ({"loaded": None}, {}),
    "update-not-loaded": ({"loaded": "580.82.07"}, {}),
    "no-module": ({"module": None}, {}),
    "mig": (
        {"gpus": [gpu(0), gpu(1, mig="Enabled"), gpu(2, mig="[N/A]")], "pci": [*BUS_IDS, "00000000:b3:00.0"]},
        {"nvidia_gpu_mig_strategy": "single"},
    ),
    "no-gpu": ({"pci": []}, {}),
}


def simulated_host(
    directory: pathlib.Path, gpus=None, module=DRIVER, loaded=DRIVER, pci=tuple(BUS_IDS)
) -> dict:
    """The files of one simulated GPU host, and the host variables that point the role at them."""
    directory.mkdir()
    state = directory / "state.json"
    state.write_text(json.dumps({"module_version": module, "gpus": gpus or [gpu(0), gpu(1)], "calls": []}))
    proc = directory / "proc-driver-nvidia-version"
    if loaded is not None:
        proc.write_text(
            f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {loaded}  Release Build  "
            "(dvs-builder@U22-I3-AF03-09-1)  Tue Sep 23 09:19:12 UTC 2025\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)\n"
        )
    probe = "printf '%s\\n' " + " ".join(bus.removeprefix("0000") for bus in pci) if pci else "true"
    return {"fake_state": str(state), "fake_proc": str(proc), "fake_pci_probe": probe}


@pytest.fixture(scope="module")
def health(tmp_path_factory) -> tuple[PlaybookOutcome, dict[str, pathlib.Path]]:
    """One run of the health check over every simulated host; its outcome and each host's state file."""
    workdir = tmp_path_factory.mktemp("gpu-health")
    tools = workdir / "bin"
    tools.mkdir()
    for tool in ("nvidia-smi", "modinfo"):
        (tools / tool).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TOOLS}" {tool} "$@"\n')
        (tools / tool).chmod(0o755)
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
    }
    hosts = {
        name: {**local, **simulated_host(workdir / name, **state), **variables}
        for name, (state, variables) in CASES.items()
    }
    inventory = {
        "all": {
            "vars": {"nvidia_gpu_persistenced": False, "nvidia_gpu_driver_branch": BRANCH},
            "children": {"gpu_nodes": {"hosts": hosts}},
        }
    }
    # Extra vars beat the role's own vars; each host's values are its host variables.
    extra = {
        "fake_tools_dir": str(tools),
        "_nvidia_gpu_pci_probe": "{{ fake_pci_probe }}",
        "_nvidia_gpu_driver_proc": "{{ fake_proc }}",
    }
    outcome = run_playbook_json(HEALTH, inventory, workdir, "--extra-vars", json.dumps(extra))
    return outcome, {name: pathlib.Path(host["fake_state"]) for name, host in hosts.items()}


def host_outcome(health, name: str) -> PlaybookOutcome:
    outcome, _ = health
    assert name in outcome.by_host, f"{name} did not run: {outcome.stderr[-3000:]}"
    return outcome.by_host[name]


def calls(health, name: str) -> list[list[str]]:
    return json.loads(health[1][name].read_text())["calls"]


def test_a_healthy_gpu_host_passes_and_reports_its_gpus(health):
    outcome = host_outcome(health, "healthy")
    assert outcome.returncode == 0, outcome.failed
    reported = [m for m in outcome.other if m.startswith("GPUs healthy: ")]
    assert reported == [
        "GPUs healthy: 0, 00000000:17:00.0, NVIDIA H200, 580.95.05, 143771 MiB; "
        "1, 00000000:65:00.0, NVIDIA H200, 580.95.05, 143771 MiB"
    ], outcome.other
    assert not [call for call in calls(health, "healthy") if "-mig" in call], (
        "MIG was touched with mig_strategy none"
    )


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("gpu-unseen", ("nvidia-smi on gpu-unseen lists 1 GPUs", "the PCI bus has 2")),
        ("other-branch", ("a driver is not from branch 580",)),
        (
            "not-loaded",
            (
                "The NVIDIA driver 580.95.05 is installed on not-loaded but not loaded",
                "set nvidia_gpu_reboot: true",
            ),
        ),
        (
            "update-not-loaded",
            (
                "update-not-loaded runs the NVIDIA driver 580.82.07, but 580.95.05 is installed",
                "version mismatch",
            ),
        ),
        ("no-module", ("no-module has no NVIDIA kernel module for its running kernel", "dkms status")),
    ],
)
def test_an_unhealthy_gpu_host_stops_saying_what_to_do(health, name, fragments):
    assert_stopped_with(host_outcome(health, name), *fragments)


def test_mig_mode_is_turned_on_only_where_it_is_off_and_supported(health):
    outcome = host_outcome(health, "mig")
    assert outcome.returncode == 0, outcome.failed
    assert [call for call in calls(health, "mig") if "-mig" in call] == [
        ["nvidia-smi", "-i", "0", "-mig", "1"]
    ]
    assert any("MIG mode is pending on mig (GPUs 0, Disabled, Disabled)" in m for m in outcome.other), (
        outcome.other
    )


def test_a_host_without_a_gpu_skips_the_check_saying_why(health):
    outcome = host_outcome(health, "no-gpu")
    assert outcome.returncode == 0, outcome.failed
    assert any("GPU health check skipped on no-gpu: no NVIDIA GPU on its PCI bus" in m for m in outcome.other)
    assert calls(health, "no-gpu") == [], "a host without a GPU ran nvidia-smi or modinfo"


# --- the real driver ---------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_the_health_check_passes_against_the_real_driver(tmp_path):
    kernel_modules = pathlib.Path("/lib/modules") / os.uname().release
    if not kernel_modules.is_dir() or shutil.which("modinfo") is None:
        pytest.skip(
            f"the health check reads the host's kernel modules; {kernel_modules} or modinfo is missing here"
        )
    driver = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    outcome = run_playbook_json(
        HEALTH,
        gpu_node_inventory(nvidia_gpu_persistenced=False, nvidia_gpu_driver_branch=driver.split(".")[0]),
        tmp_path,
    )
    assert outcome.returncode == 0, outcome.failed
    assert any(m.startswith("GPUs healthy: ") and driver in m for m in outcome.other), outcome.other
