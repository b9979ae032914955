"""Ansible: converge and idempotent re-run times, per role and for playbooks/site.yml on the 4-node
container cluster (3 k3s servers, 1 agent).

Runs the molecule scenario k3s_cluster step by step (create, converge, idempotence, destroy) in the
systemd containers of the test suite, and reads the per-role times of Ansible's profile_roles callback. The k3s binary is the fake_k3s_release test double, so the k3s numbers measure
what the roles do (files, units, firewall, ordering), not k3s starting up.

    PYTHONPATH=$PWD .venv/bin/python -m tests.bench.run --only ansible
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import resource
import subprocess
import time
from collections.abc import Callable

import docker

from tests.ansible.support import ANSIBLE_DIR, molecule, molecule_environment

RERUN_TARGET_S = 60.0
# profile_roles prints "<role> ----- 12.34s" per role at the end of a run.
ROLE_TIME = re.compile(r"^[\s│]*([a-z0-9_]+) -{3,}\s+([0-9.]+)s\s*$", re.M)
CHANGED = re.compile(r"^[\s│]*(\S+)\s+: ok=\d+\s+changed=(\d+)", re.M)


@dataclasses.dataclass
class Run:
    """One timed molecule step."""

    wall_s: float
    cpu_s: float
    role_s: dict[str, float]
    changed: int


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def containers_cpu_s(env: dict[str, str], scenario: str) -> float:
    """CPU seconds used so far by the scenario's containers (what runs on the test hosts)."""
    client = docker.DockerClient(base_url=env["DOCKER_HOST"])
    try:
        # The checkout label, computed as molecule/shared/vars/platform.yml does.
        checkout = hashlib.sha1(str(ANSIBLE_DIR).encode()).hexdigest()[:6]
        labels = [f"mlstack.scenario={scenario.replace('_', '-')}", f"mlstack.checkout={checkout}"]
        return sum(
            c.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
            for c in client.containers.list(filters={"label": labels})
        )
    finally:
        client.close()


def timed(action: str, scenario: str, env: dict[str, str], log: pathlib.Path) -> Run:
    """`molecule <action> -s <scenario>`, timed."""
    return measure(
        lambda: molecule(action, scenario, env), f"molecule {action} -s {scenario}", scenario, env, log
    )


def measure(
    step: Callable[[], subprocess.CompletedProcess[str]],
    what: str,
    scenario: str,
    env: dict[str, str],
    log: pathlib.Path,
) -> Run:
    """Wall and CPU seconds (controller and the scenario's containers), role times and changes of one Ansible
    step that prints the profile_roles and recap lines (its output, stdout and stderr together, goes to `log`)."""
    cpu_before = children_cpu_s() + containers_cpu_s(env, scenario)
    start = time.monotonic()
    result = step()
    wall = time.monotonic() - start
    cpu = children_cpu_s() + containers_cpu_s(env, scenario) - cpu_before
    log.write_text(result.stdout)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed; output in {log}")
    roles: dict[str, float] = {}
    for role, seconds in ROLE_TIME.findall(result.stdout):
        if role != "total":
            roles[role] = roles.get(role, 0.0) + float(seconds)
    changed = sum(int(count) for host, count in CHANGED.findall(result.stdout) if host != "localhost")
    return Run(wall, cpu, roles, changed)


def converge_and_rerun(scenario: str, env: dict[str, str], workdir: pathlib.Path) -> tuple[Run, Run]:
    molecule("destroy", scenario, env)
    try:
        created = molecule("create", scenario, env)
        (workdir / f"{scenario}-create.log").write_text(created.stdout)
        if created.returncode != 0:
            raise RuntimeError(f"molecule create -s {scenario} failed; output in {workdir}")
        converge = timed("converge", scenario, env, workdir / f"{scenario}-converge.log")
        rerun = timed("idempotence", scenario, env, workdir / f"{scenario}-idempotence.log")
    finally:
        molecule("destroy", scenario, env)
    return converge, rerun


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "n/a"


def row(target: str, hosts: int, converge: Run, rerun: Run) -> str:
    return (
        f"| {target} | {hosts} | {converge.wall_s:.1f} | {rerun.wall_s:.1f} | {ratio(rerun.wall_s, converge.wall_s)} "
        f"| {converge.cpu_s:.1f} | {rerun.cpu_s:.1f} | {rerun.cpu_s / 2:.1f} | {rerun.changed} |"
    )


def run(workdir: pathlib.Path) -> str:
    env = {**molecule_environment(), "MLSTACK_MOLECULE_ARTIFACTS": str(workdir / "artifacts")}
    load_before = os.getloadavg()
    site_converge, site_rerun = converge_and_rerun("k3s_cluster", env, workdir)
    load_after = os.getloadavg()

    met = "met" if site_rerun.wall_s < RERUN_TARGET_S and site_rerun.changed == 0 else "NOT met"
    lines = [
        "## Ansible: converge and idempotent re-run (`bench_ansible`)",
        "",
        "Molecule steps timed end to end (each includes starting `ansible-playbook` and fact gathering) on",
        "systemd containers of this machine; k3s is the fake_k3s_release test double. Per-role seconds are",
        "Ansible's profile_roles totals (a role's tasks, summed over the run's tasks, not over hosts).",
        f"Load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in load_before)}, "
        f"after: {'/'.join(f'{x:.1f}' for x in load_after)} (the machine is shared; higher load, slower runs).",
        "",
        "CPU s is the CPU time of the run itself: Ansible on the controller plus everything in the test",
        "containers. Unlike wall time it hardly depends on what else the machine runs; CPU s / 2 is the",
        "wall time the run would need at best on an otherwise idle 2-core machine.",
        "",
        "| target | hosts | converge wall s | re-run wall s | re-run / converge | converge CPU s | re-run CPU s "
        "| re-run CPU s / 2 cores | changed tasks in re-run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        row("`playbooks/site.yml` (scenario k3s_cluster)", 4, site_converge, site_rerun),
        "",
        f"Target: the whole site re-run on 4 nodes under {RERUN_TARGET_S:.0f} s with zero changes: **{met}** "
        f"({site_rerun.wall_s:.1f} s wall at this load, {site_rerun.cpu_s / 2:.1f} s at best on an idle machine, "
        f"{site_rerun.changed} changed).",
        "",
        "Per role inside `site.yml` on the 4-node cluster:",
        "",
        "| role | converge s | re-run s | re-run / converge |",
        "| --- | --- | --- | --- |",
    ]
    for role in sorted(set(site_converge.role_s) | set(site_rerun.role_s)):
        converge_s, rerun_s = site_converge.role_s.get(role, 0.0), site_rerun.role_s.get(role, 0.0)
        lines.append(f"| {role} | {converge_s:.1f} | {rerun_s:.1f} | {ratio(rerun_s, converge_s)} |")
    return "\n".join(lines) + "\n"
