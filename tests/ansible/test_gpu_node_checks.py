"""The nvidia_gpu role's checks, run on this machine (local connection, no privilege escalation):

- preflight (playbooks/preflight.yml) refuses bad GPU settings and an unsupported architecture before any
  change, naming what to fix, and passes a valid GPU node. The architecture case reads its facts from a
  fact cache holding this machine's facts with another architecture (gathering is smart: a cached host is
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


def gpu_node_inventory(host: str = "gpu1", **variables) -> dict:
    entry = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
    }
    return {"all": {"vars": variables, "children": {"gpu_nodes": {"hosts": {host: entry}}}}}


# --- preflight -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fact_cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("facts")


def run_preflight(tmp_path, fact_cache: pathlib.Path, host: str = "gpu1", **variables) -> PlaybookOutcome:
    return run_playbook_json(
        PREFLIGHT,
        gpu_node_inventory(host, **variables),
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


def test_an_architecture_without_nvidia_packages_is_refused(tmp_path, fact_cache):
    from ansible.plugins.loader import cache_loader, init_plugin_loader

    run_preflight(tmp_path, fact_cache)  # this machine's facts, cached as gpu1
    init_plugin_loader()
    cache = cache_loader.get("ansible.builtin.jsonfile", _uri=str(fact_cache))
    cache.set("power1", {**cache.get("gpu1"), "ansible_architecture": "ppc64le"})
    outcome = run_preflight(tmp_path, fact_cache, host="power1")
    assert_stopped_with(outcome, "power1 is in gpu_nodes but runs", "on ppc64le", "on x86_64 or aarch64")


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


class SimulatedHost:
    """The state fake_nvidia_tools reads, the driver version file, and the extra vars pointing the role at them."""

    def __init__(
        self, workdir: pathlib.Path, gpus: list[dict], module: str | None, loaded: str | None, pci: list[str]
    ) -> None:
        self.workdir = workdir
        self.tools = workdir / "bin"
        self.tools.mkdir()
        for tool in ("nvidia-smi", "modinfo"):
            (self.tools / tool).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TOOLS}" {tool} "$@"\n')
            (self.tools / tool).chmod(0o755)
        self.state = workdir / "state.json"
        self.state.write_text(json.dumps({"module_version": module, "gpus": gpus, "calls": []}))
        self.proc = workdir / "proc-driver-nvidia-version"
        if loaded is not None:
            self.proc.write_text(
                f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {loaded}  Release Build  "
                "(dvs-builder@U22-I3-AF03-09-1)  Tue Sep 23 09:19:12 UTC 2025\n"
                "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)\n"
            )
        self.pci = pci

    def run(self, **variables) -> PlaybookOutcome:
        probe = (
            "printf '%s\\n' " + " ".join(bus.removeprefix("0000") for bus in self.pci) if self.pci else "true"
        )
        extra = {
            "fake_tools_dir": str(self.tools),
            "fake_state": str(self.state),
            "_nvidia_gpu_pci_probe": probe,
            "_nvidia_gpu_driver_proc": str(self.proc),
        }
        inventory = gpu_node_inventory(
            nvidia_gpu_persistenced=False, nvidia_gpu_driver_branch=BRANCH, **variables
        )
        return run_playbook_json(HEALTH, inventory, self.workdir, "--extra-vars", json.dumps(extra))

    def calls(self) -> list[list[str]]:
        return json.loads(self.state.read_text())["calls"]


def healthy(tmp_path, **changes) -> SimulatedHost:
    settings = {"gpus": [gpu(0), gpu(1)], "module": DRIVER, "loaded": DRIVER, "pci": BUS_IDS} | changes
    return SimulatedHost(tmp_path, **settings)


def test_a_healthy_gpu_host_passes_and_reports_its_gpus(tmp_path):
    host = healthy(tmp_path)
    outcome = host.run()
    assert outcome.returncode == 0, outcome.failed
    assert any(
        m.startswith("GPUs healthy: 0, 00000000:17:00.0, NVIDIA H200, 580.95.05") for m in outcome.other
    ), outcome.other
    assert not [call for call in host.calls() if "-mig" in call], "MIG was touched with mig_strategy none"


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        pytest.param(
            {"gpus": [gpu(0)]}, ("nvidia-smi on gpu1 lists 1 GPUs", "the PCI bus has 2"), id="gpu-unseen"
        ),
        pytest.param(
            {
                "gpus": [gpu(0, "575.57.08"), gpu(1, "575.57.08")],
                "module": "575.57.08",
                "loaded": "575.57.08",
            },
            ("a driver is not from branch 580",),
            id="other-branch",
        ),
        pytest.param(
            {"loaded": None},
            (
                "The NVIDIA driver 580.95.05 is installed on gpu1 but not loaded",
                "set nvidia_gpu_reboot: true",
            ),
            id="not-loaded",
        ),
        pytest.param(
            {"loaded": "580.82.07"},
            (
                "gpu1 runs the NVIDIA driver 580.82.07, but 580.95.05 is installed",
                "Driver/library version mismatch",
            ),
            id="update-not-loaded",
        ),
        pytest.param(
            {"module": None},
            ("gpu1 has no NVIDIA kernel module for its running kernel", "dkms status"),
            id="no-module",
        ),
    ],
)
def test_an_unhealthy_gpu_host_stops_the_run_saying_what_to_do(tmp_path, changes, fragments):
    assert_stopped_with(healthy(tmp_path, **changes).run(), *fragments)


def test_mig_mode_is_turned_on_only_where_it_is_off_and_supported(tmp_path):
    gpus = [gpu(0), gpu(1, mig="Enabled"), gpu(2, mig="[N/A]")]
    host = healthy(tmp_path, gpus=gpus, pci=[*BUS_IDS, "00000000:b3:00.0"])
    outcome = host.run(nvidia_gpu_mig_strategy="single")
    assert outcome.returncode == 0, outcome.failed
    assert [call for call in host.calls() if "-mig" in call] == [["nvidia-smi", "-i", "0", "-mig", "1"]]
    assert any("MIG mode is pending on gpu1 (GPUs 0, Disabled, Disabled)" in m for m in outcome.other), (
        outcome.other
    )


def test_a_host_without_a_gpu_skips_the_check_saying_why(tmp_path):
    host = healthy(tmp_path, pci=[])
    outcome = host.run()
    assert outcome.returncode == 0, outcome.failed
    assert any("GPU health check skipped on gpu1: no NVIDIA GPU on its PCI bus" in m for m in outcome.other)
    assert host.calls() == [], "a host without a GPU ran nvidia-smi or modinfo"


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
