"""Ansible GPU tier: converge and idempotent re-run times of playbooks/gpu.yml on the 2 GPU nodes of the
gpu_nodes molecule scenario (gpu1: open modules, dkms guard, container toolkit, time-slicing; gpu2:
proprietary modules, versionlock guard, MIG), each run alone with ansible-playbook against molecule's
inventory. The packages come from fake_nvidia_repository, the test double of NVIDIA's apt repositories that
the scenario serves on each host: the numbers measure what the role does (keys, sources, pin, package
installs through apt, files, handlers), not a driver build.

    PYTHONPATH=$PWD .venv/bin/python -m tests.bench.run --only ansible_gpu
"""

from __future__ import annotations

import os
import pathlib

from tests.bench.bench_ansible import ratio
from tests.bench.bench_ansible_data import load_line, role_table, run_tiers, tier_table

# The run this benchmark measured before the role probed its files once (commit e3bba54, same scenario and
# machine, load 0.7 to 1.8).
BEFORE = {"commit": "e3bba54", "converge_s": 68.9, "rerun_s": 49.5, "rerun_cpu_s": 62.2}
SCENARIO = "gpu_nodes"
TIERS = ("gpu",)
HOSTS = 2


def run(workdir: pathlib.Path) -> str:
    load_before = os.getloadavg()
    runs = run_tiers(SCENARIO, TIERS, workdir)
    load_after = os.getloadavg()
    converge, rerun = runs["gpu"]
    lines = [
        "## Ansible GPU tier: converge and idempotent re-run (`bench_ansible_gpu`)",
        "",
        f"`playbooks/gpu.yml` run alone with `ansible-playbook` on the {HOSTS} GPU nodes of the `gpu_nodes` molecule",
        "scenario (systemd containers, no GPU: the health check is skipped, saying so), converge then the re-run",
        "that must change nothing; each run includes starting `ansible-playbook` and gathering facts. The driver,",
        "toolkit and header packages come from fake_nvidia_repository, the test double of NVIDIA's signed apt",
        "repositories served on each host, so the times are apt's and the role's, not a DKMS build's (minutes on a",
        "real host, once per kernel).",
        load_line(load_before, load_after),
        "CPU s: Ansible on the controller plus everything in the test containers; CPU s / 2 is the best wall",
        "time on an otherwise idle 2-core machine.",
        "",
        *tier_table(runs, HOSTS),
        "",
        f"Against the run before the role probed its files once per run (commit {BEFORE['commit']}, recorded, not",
        "measured side by side):",
        "",
        "| run | converge wall s | re-run wall s | re-run CPU s |",
        "| --- | --- | --- | --- |",
        f"| before ({BEFORE['commit']}) | {BEFORE['converge_s']:.1f} | {BEFORE['rerun_s']:.1f} | {BEFORE['rerun_cpu_s']:.1f} |",
        f"| now | {converge.wall_s:.1f} | {rerun.wall_s:.1f} | {rerun.cpu_s:.1f} |",
        f"| now / before | {ratio(converge.wall_s, BEFORE['converge_s'])} | {ratio(rerun.wall_s, BEFORE['rerun_s'])} "
        f"| {ratio(rerun.cpu_s, BEFORE['rerun_cpu_s'])} |",
        "",
        "Per role (profile_roles totals):",
        "",
        *role_table(runs),
    ]
    return "\n".join(lines) + "\n"
