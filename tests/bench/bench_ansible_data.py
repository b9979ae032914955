"""Ansible data tier: converge and idempotent re-run times of playbooks/hdfs.yml and playbooks/kafka.yml on
the 3-node container cluster of the data_tier molecule scenario (1 NameNode + 2 DataNodes; 3 combined
KRaft controllers/brokers).

Creates and prepares the scenario's containers with molecule, then runs each tier's playbook twice with
ansible-playbook against molecule's inventory (converge, then the re-run that must change nothing), so
each tier is timed alone. Hadoop and Kafka are the real daemons, from the release tarballs `make releases`
builds (molecule's prepare makes them if missing): the numbers include the JVMs starting, the NameNode
format, the KRaft quorum forming and the topics created through it.

    PYTHONPATH=$PWD .venv/bin/python -m tests.bench.run --only ansible_data
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
import subprocess

from tests.ansible.support import ANSIBLE_DIR, VENV_BIN, molecule, molecule_environment
from tests.bench.bench_ansible import Run, measure, ratio

SCENARIO = "data_tier"
TIERS = ("hdfs", "kafka")
HOSTS = 3


def playbook(tier: str, env: dict[str, str], ephemeral: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """playbooks/<tier>.yml on the scenario's hosts, as molecule would run it (its inventory and config)."""
    return subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "--inventory",
            str(ephemeral / "inventory"),
            f"playbooks/{tier}.yml",
        ],
        cwd=ANSIBLE_DIR,
        # molecule passes the library of mlstack_file_state in its environment, not in its ansible.cfg.
        env={
            **env,
            "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg"),
            "ANSIBLE_LIBRARY": str(ANSIBLE_DIR / "library"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
        check=False,
    )


def run_tiers(scenario: str, tiers: tuple[str, ...], workdir: pathlib.Path) -> dict[str, tuple[Run, Run]]:
    """Creates and prepares the scenario's hosts, then runs each tier's playbook twice (converge, re-run)."""
    env = {
        **molecule_environment(),
        "MLSTACK_MOLECULE_ARTIFACTS": str(workdir / "artifacts"),
        "MOLECULE_EPHEMERAL_DIRECTORY": str(workdir / "ephemeral"),
    }
    ephemeral = pathlib.Path(env["MOLECULE_EPHEMERAL_DIRECTORY"])
    molecule("destroy", scenario, env)
    try:
        for action in ("create", "prepare"):
            result = molecule(action, scenario, env)
            (workdir / f"{scenario}-{action}.log").write_text(result.stdout)
            if result.returncode != 0:
                raise RuntimeError(f"molecule {action} -s {scenario} failed; output in {workdir}")
        runs = {}
        for tier in tiers:
            steps = [
                measure(
                    functools.partial(playbook, tier, env, ephemeral),
                    f"{tier}.yml",
                    scenario,
                    env,
                    workdir / f"{tier}-{step}.log",
                )
                for step in ("converge", "rerun")
            ]
            runs[tier] = (steps[0], steps[1])
    finally:
        molecule("destroy", scenario, env)
    return runs


def load_line(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    return (
        f"Load average (1/5/15 min) before: {'/'.join(f'{x:.1f}' for x in before)}, "
        f"after: {'/'.join(f'{x:.1f}' for x in after)} (the machine is shared; higher load, slower runs)."
    )


def tier_table(runs: dict[str, tuple[Run, Run]], hosts: int) -> list[str]:
    lines = [
        "| tier | hosts | converge wall s | re-run wall s | re-run / converge | converge CPU s | re-run CPU s "
        "| re-run CPU s / 2 cores | changed tasks in re-run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for tier, (converge, rerun) in runs.items():
        lines.append(
            f"| `playbooks/{tier}.yml` | {hosts} | {converge.wall_s:.1f} | {rerun.wall_s:.1f} "
            f"| {ratio(rerun.wall_s, converge.wall_s)} | {converge.cpu_s:.1f} | {rerun.cpu_s:.1f} "
            f"| {rerun.cpu_s / 2:.1f} | {rerun.changed} |"
        )
    return lines


def role_table(runs: dict[str, tuple[Run, Run]]) -> list[str]:
    lines = ["| tier | role | converge s | re-run s | re-run / converge |", "| --- | --- | --- | --- | --- |"]
    for tier, (converge, rerun) in runs.items():
        for role in sorted(set(converge.role_s) | set(rerun.role_s)):
            converge_s, rerun_s = converge.role_s.get(role, 0.0), rerun.role_s.get(role, 0.0)
            lines.append(
                f"| {tier} | {role} | {converge_s:.1f} | {rerun_s:.1f} | {ratio(rerun_s, converge_s)} |"
            )
    return lines


# A tier row of an earlier section: name, converge wall s, re-run wall s, converge CPU s, re-run CPU s.
_TIER_ROW = re.compile(
    r"^\| `playbooks/(?P<tier>\w+)\.yml` \| \d+ \| (?P<cw>[\d.]+) \| (?P<rw>[\d.]+) \| [^|]+ "
    r"\| (?P<cc>[\d.]+) \| (?P<rc>[\d.]+) \|",
    re.M,
)


def recorded(section: str) -> tuple[str, dict[str, tuple[float, float, float, float]]]:
    """The date and tier rows of the section an earlier run wrote (empty when there is none)."""
    date = re.search(r"Date: (\d{4}-\d{2}-\d{2})", section)
    rows = {
        m["tier"]: (float(m["cw"]), float(m["rw"]), float(m["cc"]), float(m["rc"]))
        for m in _TIER_ROW.finditer(section)
    }
    return (date[1] if date else "unknown date"), rows


def comparison_table(runs: dict[str, tuple[Run, Run]], section: str) -> list[str]:
    """This run next to the last recorded one (from ``section``, the page's current text of this benchmark)."""
    date, before = recorded(section)
    if not before:
        return []
    lines = [
        f"Against the last recorded run ({date}), wall and CPU seconds, now / then:",
        "",
        "| tier | converge wall s | re-run wall s | converge CPU s | re-run CPU s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for tier, (converge, rerun) in runs.items():
        if tier in before:
            now = (converge.wall_s, rerun.wall_s, converge.cpu_s, rerun.cpu_s)
            cells = " | ".join(
                f"{a:.1f} / {b:.1f} ({ratio(a, b)})" for a, b in zip(now, before[tier], strict=True)
            )
            lines.append(f"| `playbooks/{tier}.yml` | {cells} |")
    return [*lines, ""]


def last_recorded_section() -> str:
    from tests.bench.run import PAGE, SECTION

    found = {m["name"]: m["body"] for m in SECTION.finditer(PAGE.read_text())} if PAGE.exists() else {}
    return found.get("ansible_data", "")


def run(workdir: pathlib.Path) -> str:
    previous = last_recorded_section()
    load_before = os.getloadavg()
    runs = run_tiers(SCENARIO, TIERS, workdir)
    load_after = os.getloadavg()
    lines = [
        "## Ansible data tier: converge and idempotent re-run per tier (`bench_ansible_data`)",
        "",
        f"Each tier's playbook run alone with `ansible-playbook` on the {HOSTS} systemd containers of the `data_tier`",
        "molecule scenario (node1: NameNode; node2, node3: DataNodes; all three combined KRaft controllers and",
        "brokers), HDFS first, then Kafka; each run includes starting `ansible-playbook` and gathering facts.",
        "Hadoop and Kafka are the real daemons from the `make releases` tarballs (small heaps, SCRAM on the broker",
        "listener, as the scenario sets them); OpenJDK 17 is the Debian package (its download comes from the",
        "package cache after the first run).",
        load_line(load_before, load_after),
        "CPU s: Ansible on the controller plus everything in the test containers; CPU s / 2 is the best wall",
        "time on an otherwise idle 2-core machine.",
        "",
        *tier_table(runs, HOSTS),
        "",
        *comparison_table(runs, previous),
        "Per role inside each tier (profile_roles totals; java_runtime, release_artifact and firewalld_service are",
        "included by both tiers):",
        "",
        *role_table(runs),
    ]
    return "\n".join(lines) + "\n"
