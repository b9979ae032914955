"""Each molecule scenario under ansible/molecule/ runs as one test: `molecule test -s <scenario>`
(create, converge, idempotence, side effects, testinfra verify, destroy) in systemd containers.

The container engine and the Debian 12 image come from tests/support/dockerd.sh and
molecule-image.sh, which reuse what is already there. Each run's full output is kept in
build/molecule-logs/<scenario>.log; a failure shows the failed tasks and tests from it.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from tests.ansible.support import ROOT, ContainerEngineMissing, molecule, molecule_environment, scenarios

LOG_DIR = ROOT / "build" / "molecule-logs"
# Longest first. The suite runs the molecule scenarios before every other test (tests/conftest.py), so each
# starts at once on a worker of its own while the other workers run the rest around them.
ORDER = ["k3s_cluster", "data_tier", "gpu_nodes", "preflight"]
# A scenario that runs longer than this (the 4-node one takes 10-18 min on a loaded 2-core machine) is stopped.
RUN_LIMIT_S = 1500
FAILURE_LINES = re.compile(r"fatal:|FAILED|ERROR|CRITICAL|^\s*│?\s*E\s{2,}|Traceback|msg:", re.M)


@pytest.fixture(scope="session")
def molecule_env() -> dict[str, str]:
    """Environment for molecule: a running engine, the test image, this checkout's roles."""
    try:
        env = molecule_environment()
    except ContainerEngineMissing as missing:
        pytest.skip(str(missing))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return env


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


def gpu_checks_skipped_saying_why(output: str, artifacts: pathlib.Path) -> None:
    """Both GPU nodes of the scenario (no GPU in a container) skipped the health check and said why."""
    said = " ".join(output.split())
    for host in ("gpu1", "gpu2"):
        reason = f"GPU health check skipped on {host}: no NVIDIA GPU on its PCI bus."
        assert reason in said, f"no {reason!r} in the output"


def scram_passwords_never_printed(output: str, artifacts: pathlib.Path) -> None:
    """The SCRAM passwords the run generated (molecule.yml of data_tier) appear nowhere in molecule's output."""
    passwords = [path.read_text().split()[0] for path in sorted(artifacts.glob("scram-*"))]
    assert len(passwords) == 2, f"expected the brokers' and the producer's passwords in {artifacts}"
    assert all(len(password) >= 12 for password in passwords), "a generated password is too short"
    assert not [password for password in passwords if password in output], "a SCRAM password was printed"


AFTER_RUN = {
    "k3s_cluster": [token_never_printed],
    "data_tier": [scram_passwords_never_printed],
    "gpu_nodes": [gpu_checks_skipped_saying_why],
}


@pytest.mark.molecule
@pytest.mark.slow
# Above the suite's 900 s: a loaded 2-core machine stretches the 4-node scenario; the run stops itself first
# (RUN_LIMIT_S), keeps what it printed and removes its containers.
@pytest.mark.timeout(RUN_LIMIT_S + 300)
@pytest.mark.parametrize(
    "scenario", sorted(scenarios(), key=lambda s: (s not in ORDER, ORDER.index(s) if s in ORDER else 0, s))
)
def test_molecule_scenario_passes(scenario, molecule_env, tmp_path):
    artifacts = tmp_path / "artifacts"
    log = LOG_DIR / f"{scenario}.log"
    # Molecule's state directory is named after the project directory ("ansible") alone, so every
    # checkout on a machine would share it: each run gets its own.
    env = {
        **molecule_env,
        "MLSTACK_MOLECULE_ARTIFACTS": str(artifacts),
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "molecule-state"),
    }
    try:
        result = molecule("test", scenario, env, timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired as expired:
        output = expired.output or ""
        log.write_text(output)
        molecule("destroy", scenario, env)  # the killed run left its containers running
        pytest.fail(f"molecule test -s {scenario} ran over {RUN_LIMIT_S} s\n" + failure_summary(output, log))
    log.write_text(result.stdout)
    assert result.returncode == 0, failure_summary(result.stdout, log)
    for check in AFTER_RUN.get(scenario, []):
        check(result.stdout, artifacts)
