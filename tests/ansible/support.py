"""Paths and runners shared by the Ansible tests (fast tests and the molecule wrapper)."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "ansible"
ROLES_DIR = ANSIBLE_DIR / "roles"
MOLECULE_DIR = ANSIBLE_DIR / "molecule"
VENV_BIN = pathlib.Path(sys.executable).parent


def roles() -> list[str]:
    return sorted(path.name for path in ROLES_DIR.iterdir() if (path / "tasks").is_dir())


def scenarios() -> list[str]:
    return sorted(path.parent.name for path in MOLECULE_DIR.glob("*/molecule.yml"))


def load_yaml(path: pathlib.Path) -> object:
    return yaml.safe_load(path.read_text())


def ansible_env(**extra: str) -> dict[str, str]:
    """Environment for ansible commands run from tests: this checkout's roles and config, no colour."""
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
        **extra,
    }
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    return env


def run_playbook(
    playbook: pathlib.Path, inventory: pathlib.Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    command = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=timeout,
        check=False,
        cwd=ANSIBLE_DIR,
    )


@dataclasses.dataclass
class PlaybookOutcome:
    """What a playbook run said, read through the json callback: failure messages and the other messages."""

    returncode: int
    failed: list[str]
    other: list[str]
    stderr: str
    # The same, host by host (a host's returncode: 2 if it failed or was unreachable, else 0).
    by_host: dict[str, PlaybookOutcome] = dataclasses.field(default_factory=dict)


def run_playbook_json(
    playbook: pathlib.Path, inventory: dict, workdir: pathlib.Path, *args: str, **env: str
) -> PlaybookOutcome:
    """ansible-playbook with an inventory written from `inventory` into workdir; every task's messages."""
    path = workdir / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    process = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(path), str(playbook), *args],
        capture_output=True,
        text=True,
        env=ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", **env),
        timeout=300,
        check=False,
        cwd=ANSIBLE_DIR,
    )
    start = process.stdout.find("{")
    assert start >= 0, process.stderr[-3000:]
    # The JSON document, then whatever other callbacks print after it.
    document = json.JSONDecoder().raw_decode(process.stdout[start:])[0]
    outcome = PlaybookOutcome(process.returncode, [], [], process.stderr)
    for host, stats in document.get("stats", {}).items():
        code = 2 if stats.get("failures") or stats.get("unreachable") else 0
        outcome.by_host[host] = PlaybookOutcome(code, [], [], process.stderr)
    for host, result in _task_results(document):
        if "msg" in result and not result.get("skipped"):
            for target in (outcome, outcome.by_host[host]):
                (target.failed if result.get("failed") else target.other).append(str(result["msg"]))
    return outcome


def _task_results(document: dict):
    """(host, result) of every task of a json callback document, each loop item as a result of its own."""
    for play in document.get("plays", []):
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                for item in [result, *result.get("results", [])]:
                    yield host, item


def assert_stopped_with(outcome: PlaybookOutcome, *fragments: str) -> None:
    """The run failed, and one failure message holds every fragment."""
    assert outcome.returncode != 0, f"the run passed: {outcome.other}"
    assert any(all(f in message for f in fragments) for message in outcome.failed), (
        f"no failure with {fragments}: {outcome.failed}"
    )


BUILD_DIR = ROOT / "build"


class ContainerEngineMissing(RuntimeError):
    """The tools molecule needs are not installed (a reason to skip, not a failure)."""


def molecule_environment() -> dict[str, str]:
    """Environment for `molecule`: the test engine running (tests/support/dockerd.sh), the Debian 12
    image built (tests/support/molecule-image.sh), this checkout's roles, a package cache, no colour."""
    missing = [tool for tool in ("docker", "dockerd", "debootstrap") if shutil.which(tool) is None]
    if missing:
        raise ContainerEngineMissing(
            f"molecule needs {', '.join(missing)} (Debian packages docker.io, debootstrap): run `make system-deps`"
        )
    support = ROOT / "tests" / "support"
    docker_host = _last_line([str(support / "dockerd.sh")], dict(os.environ))
    env = {**os.environ, "DOCKER_HOST": docker_host}
    image = _last_line([str(support / "molecule-image.sh")], env)
    package_cache = BUILD_DIR / "molecule-cache"
    package_cache.mkdir(parents=True, exist_ok=True)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        MOLECULE_IMAGE=image,
        MOLECULE_PACKAGE_CACHE=str(package_cache),
        ANSIBLE_ROLES_PATH=str(ROLES_DIR),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PY_COLORS="0",
        NO_COLOR="1",
        # Wide enough that molecule does not wrap Ansible's lines (the bench parses them).
        COLUMNS="250",
    )
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    return env


def _last_line(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def molecule(
    action: str, scenario: str, env: dict[str, str], timeout: float = 1150
) -> subprocess.CompletedProcess[str]:
    """`molecule <action> -s <scenario>` from ansible/, stdout and stderr together. Past `timeout`, molecule
    and everything it started (ansible-playbook, its workers) are killed, and TimeoutExpired carries the output."""
    command = [str(VENV_BIN / "molecule"), action, "-s", scenario]
    with subprocess.Popen(
        command,
        cwd=ANSIBLE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise subprocess.TimeoutExpired(command, timeout, output=output) from None
    return subprocess.CompletedProcess(command, process.returncode, output)
