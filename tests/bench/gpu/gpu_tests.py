"""The ``gpu``-marked tests the GPU machine can run, and those it cannot (with why).

Every test file holding a ``gpu`` mark is in exactly one of the two (a test in
tests/bench/test_gpu_script.py checks this), so a new GPU test is either run on the machine or
left out with a reason, never forgotten.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

from tests.bench.run import ROOT

RUN_THERE = ("tests/workloads/distributed/test_gpu.py",)
LEFT_OUT = {
    "tests/workloads/test_training_mwms.py": "TensorFlow's trainer; the machine has no TensorFlow",
    "tests/ansible/test_gpu_node_checks.py": "a playbook against the host's kernel modules; no Ansible there",
}
MARK = "pytest.mark.gpu"


def marked_files() -> list[str]:
    """Every test file (relative to the checkout) that marks a test ``gpu``."""
    return sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if MARK in path.read_text(encoding="utf-8")
    )


def run(env: dict[str, str], log: pathlib.Path, timeout: float) -> dict[str, Any]:
    """``pytest -m gpu`` over :data:`RUN_THERE`; its exit code and summary line, the output in ``log``."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "-m", "gpu", *RUN_THERE]
    try:
        result = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"files": list(RUN_THERE), "returncode": None, "summary": f"stopped after {timeout:.0f} s"}
    log.write_text(result.stdout + result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return {
        "files": list(RUN_THERE),
        "returncode": result.returncode,
        "summary": lines[-1].strip("= ") if lines else "no output",
    }
