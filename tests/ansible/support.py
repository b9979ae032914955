"""Paths and runners shared by the Ansible tests (fast tests and the molecule wrapper)."""

from __future__ import annotations

import os
import pathlib
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
