"""Each molecule scenario under ansible/molecule/ runs as one test: `molecule test -s <scenario>`
(create, converge, idempotence, side effects, testinfra verify, destroy) in systemd containers.

The container engine and the Debian 12 image come from tests/support/dockerd.sh and
molecule-image.sh, which reuse what is already there. Each run's full output is kept in
build/molecule-logs/<scenario>.log; a failure shows the failed tasks and tests from it.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.ansible.support import ANSIBLE_DIR, ROLES_DIR, ROOT, VENV_BIN, scenarios

LOG_DIR = ROOT / "build" / "molecule-logs"
PACKAGE_CACHE = ROOT / "build" / "molecule-cache"
# The longest scenario first, so that it starts at once on one worker while the others share the other.
ORDER = ["k3s_cluster", "host_baseline", "preflight"]
FAILURE_LINES = re.compile(r"fatal:|FAILED|ERROR|CRITICAL|^\s*│?\s*E\s{2,}|Traceback|msg:", re.M)


@pytest.fixture(scope="session")
def molecule_env() -> dict[str, str]:
    """Environment for molecule: a running engine, the test image, this checkout's roles."""
    missing = [tool for tool in ("docker", "dockerd", "debootstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"molecule needs {', '.join(missing)} (Debian packages docker.io, debootstrap): run `make system-deps`"
        )
    support = ROOT / "tests" / "support"
    docker_host = _check_output([str(support / "dockerd.sh")], os.environ)
    env = {**os.environ, "DOCKER_HOST": docker_host}
    image = _check_output([str(support / "molecule-image.sh")], env)
    PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        MOLECULE_IMAGE=image,
        MOLECULE_PACKAGE_CACHE=str(PACKAGE_CACHE),
        ANSIBLE_ROLES_PATH=str(ROLES_DIR),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PY_COLORS="0",
        NO_COLOR="1",
    )
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    return env


def _check_output(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip().splitlines()[-1]


def failure_summary(output: str, log: pathlib.Path) -> str:
    lines = output.splitlines()
    marked = [line for line in lines if FAILURE_LINES.search(line)]
    return "\n".join(
        [
            f"molecule failed; full output in {log}",
            "--- failures ---",
            *marked[-60:],
            "--- last lines ---",
            *lines[-40:],
        ]
    )


def token_never_printed(output: str, artifacts: pathlib.Path) -> None:
    """The cluster token the run generated appears nowhere in molecule's output."""
    secret = VaultSecret((artifacts / "vault-password").read_bytes().strip())
    token = (
        VaultLib([("default", secret)]).decrypt((artifacts / "k3s-token.vault").read_bytes()).decode().strip()
    )
    assert len(token) >= 32, "the generated token is too short"
    assert token not in output, "the cluster token was printed"


AFTER_RUN = {"k3s_cluster": [token_never_printed]}


@pytest.mark.molecule
@pytest.mark.slow
# Above the suite's 900 s: a loaded 2-core machine stretches the 4-node scenario; the run stops itself first.
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    "scenario", sorted(scenarios(), key=lambda s: (s not in ORDER, ORDER.index(s) if s in ORDER else 0, s))
)
def test_molecule_scenario_passes(scenario, molecule_env, tmp_path):
    artifacts = tmp_path / "artifacts"
    log = LOG_DIR / f"{scenario}.log"
    env = {**molecule_env, "MLSTACK_MOLECULE_ARTIFACTS": str(artifacts)}
    result = subprocess.run(
        [str(VENV_BIN / "molecule"), "test", "-s", scenario],
        cwd=ANSIBLE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1500,
        check=False,
    )
    log.write_text(result.stdout)
    assert result.returncode == 0, failure_summary(result.stdout, log)
    for check in AFTER_RUN.get(scenario, []):
        check(result.stdout, artifacts)
