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
import threading
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
    remote_commands: int


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def scenario_labels(scenario: str) -> list[str]:
    # The checkout label, computed as molecule/shared/vars/platform.yml does.
    checkout = hashlib.sha1(str(ANSIBLE_DIR).encode()).hexdigest()[:6]
    return [f"mlstack.scenario={scenario.replace('_', '-')}", f"mlstack.checkout={checkout}"]


def containers_cpu_s(env: dict[str, str], scenario: str) -> float:
    """CPU seconds used so far by the scenario's containers (what runs on the test hosts)."""
    client = docker.DockerClient(base_url=env["DOCKER_HOST"])
    try:
        return sum(
            c.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
            for c in client.containers.list(filters={"label": scenario_labels(scenario)})
        )
    finally:
        client.close()


class RemoteCommandCounter:
    """Counts the commands Ansible starts on the scenario's hosts (`docker exec`, the container
    counterpart of an SSH session): the remote work of a run, independent of the machine's load."""

    def __init__(self, env: dict[str, str], scenario: str) -> None:
        self.client = docker.DockerClient(base_url=env["DOCKER_HOST"])
        names = [c.name for c in self.client.containers.list(filters={"label": scenario_labels(scenario)})]
        if not names:  # an empty container filter would count every container of the engine
            raise RuntimeError(f"no running containers of scenario {scenario} to count commands in")
        self.events = self.client.events(decode=True, filters={"event": "exec_start", "container": names})
        self.count = 0
        self.thread = threading.Thread(target=self._count, daemon=True)
        self.thread.start()

    def _count(self) -> None:
        for _ in self.events:
            self.count += 1

    def stop(self) -> int:
        time.sleep(1)  # the last events of the run are still on their way
        self.events.close()
        self.thread.join(timeout=10)
        self.client.close()
        return self.count


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
    counter = RemoteCommandCounter(env, scenario)
    start = time.monotonic()
    result = step()
    wall = time.monotonic() - start
    remote_commands = counter.stop()
    cpu = children_cpu_s() + containers_cpu_s(env, scenario) - cpu_before
    log.write_text(result.stdout)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed; output in {log}")
    roles: dict[str, float] = {}
    for role, seconds in ROLE_TIME.findall(result.stdout):
        if role != "total":
            roles[role] = roles.get(role, 0.0) + float(seconds)
    changed = sum(int(count) for host, count in CHANGED.findall(result.stdout) if host != "localhost")
    return Run(wall, cpu, roles, changed, remote_commands)


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
        f"| {converge.cpu_s:.1f} | {rerun.cpu_s:.1f} | {rerun.cpu_s / 2:.1f} "
        f"| {converge.remote_commands} | {rerun.remote_commands} | {rerun.changed} |"
    )


# The re-run as this benchmark measured it before the roles probed their files once per phase (commit
# de7825f, same scenario and machine, load 5.8 to 3.7); its remote commands were counted from a -vvv run.
BEFORE = {"wall_s": 177.9, "cpu_s": 133.9, "remote_commands": 361}


def run(workdir: pathlib.Path) -> str:
    env = {
        **molecule_environment(),
        "MLSTACK_MOLECULE_ARTIFACTS": str(workdir / "artifacts"),
        # Molecule keeps its state in a directory named after the project directory ("ansible"), which
        # every checkout on the machine shares: give this run its own.
        "MOLECULE_EPHEMERAL_DIRECTORY": str(workdir / "molecule-state"),
    }
    load_before = os.getloadavg()
    site_converge, site_rerun = converge_and_rerun("k3s_cluster", env, workdir)
    load_after = os.getloadavg()

    met = "met" if site_rerun.wall_s < RERUN_TARGET_S and site_rerun.changed == 0 else "NOT met"
    idle_met = "met" if site_rerun.cpu_s / 2 < RERUN_TARGET_S and site_rerun.changed == 0 else "NOT met"
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
        "wall time the run would need at best on an otherwise idle 2-core machine. It leaves out the",
        "container engine's own work for each `docker exec` (dockerd, containerd, runc: measured at about",
        "0.1 CPU s per command here), which is why the remote commands are counted too: each is one",
        "`docker exec` here, one SSH session on real hosts.",
        "",
        "| target | hosts | converge wall s | re-run wall s | re-run / converge | converge CPU s | re-run CPU s "
        "| re-run CPU s / 2 cores | converge remote commands | re-run remote commands | changed tasks in re-run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        row("`playbooks/site.yml` (scenario k3s_cluster)", 4, site_converge, site_rerun),
        "",
        "The re-run against the one before the roles probed their files once per phase (that run: commit",
        "de7825f, measured by this benchmark at load 5.8 to 3.7; its remote commands counted from a -vvv run):",
        "",
        "| re-run | wall s | CPU s | CPU s / 2 cores | remote commands |",
        "| --- | --- | --- | --- | --- |",
        f"| before (de7825f) | {BEFORE['wall_s']:.1f} | {BEFORE['cpu_s']:.1f} | {BEFORE['cpu_s'] / 2:.1f} "
        f"| {BEFORE['remote_commands']} |",
        f"| now | {site_rerun.wall_s:.1f} | {site_rerun.cpu_s:.1f} | {site_rerun.cpu_s / 2:.1f} "
        f"| {site_rerun.remote_commands} |",
        f"| now / before | {ratio(site_rerun.wall_s, BEFORE['wall_s'])} | {ratio(site_rerun.cpu_s, BEFORE['cpu_s'])} "
        f"| {ratio(site_rerun.cpu_s, BEFORE['cpu_s'])} | {ratio(site_rerun.remote_commands, BEFORE['remote_commands'])} |",
        "",
        f"Target: the whole site re-run on 4 nodes under {RERUN_TARGET_S:.0f} s with zero changes: **{met}** "
        f"at this load ({site_rerun.wall_s:.1f} s wall, {site_rerun.changed} changed); on an idle 2-core machine "
        f"**{idle_met}** ({site_rerun.cpu_s / 2:.1f} s at best, engine work not counted).",
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
