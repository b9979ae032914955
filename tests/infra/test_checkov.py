"""checkov's Kubernetes checks pass offline on the rendered manifests; every suppression has its reason.

checkov lives in its own virtual environment (``make checkov``; it would downgrade the main
environment's boto3 and packaging) and always runs with ``--skip-download``, so it never calls home.
Both example stacks are scanned in one checkov run (its start-up dominates the time).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

import pytest

from infra.specs.workload import CHECKOV_SKIP
from tests.infra.conftest import program_run
from tests.infra.manifests import scannable_objects, write_manifests
from tests.infra.program import ROOT, STACKS, ProgramRun

pytestmark = [pytest.mark.xdist_group(name="infra-program"), pytest.mark.slow]

CHECKOV = pathlib.Path(
    os.environ.get("MLSTACK_CHECKOV", ROOT / "build" / "tools" / "checkov" / "bin" / "checkov")
)


def pinned_version() -> str:
    match = re.search(r"^CHECKOV_VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile pins CHECKOV_VERSION"
    return match[1]


@pytest.fixture(scope="module")
def checkov() -> pathlib.Path:
    if not CHECKOV.exists():
        pytest.skip(
            f"checkov is not installed at {CHECKOV}; run `make checkov` (its own venv, pinned in the Makefile)"
        )
    version = subprocess.run(
        [CHECKOV, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version == pinned_version(), (
        f"{CHECKOV} is {version}; the Makefile pins {pinned_version()}: run `make checkov`"
    )
    return CHECKOV


def scan(checkov: pathlib.Path, directory: pathlib.Path) -> dict[str, dict[str, list[dict]]]:
    """checkov's passed/failed/skipped checks per manifest file stem, from one run over ``directory``."""
    result = subprocess.run(
        [
            checkov,
            "--skip-download",
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--directory",
            str(directory),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "LOG_LEVEL": "ERROR", "ANSI_COLORS_DISABLED": "1"},
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    by_file: dict[str, dict[str, list[dict]]] = {}
    for outcome in ("passed_checks", "failed_checks", "skipped_checks"):
        for check in report["results"].get(outcome, []):
            by_file.setdefault(pathlib.Path(check["file_path"]).stem, {}).setdefault(outcome, []).append(
                check
            )
    return by_file


def suppression_reasons(run: ProgramRun) -> dict[str, dict[str, str]]:
    """checkov resource id -> check id -> the reason written in the object's annotations."""
    reasons: dict[str, dict[str, str]] = {}
    for obj in scannable_objects(run):
        meta = obj["metadata"]
        resource = f"{obj['kind']}.{meta.get('namespace', 'default')}.{meta['name']}"
        for key, value in meta.get("annotations", {}).items():
            if key.startswith(CHECKOV_SKIP):
                check, _, reason = value.partition("=")
                reasons.setdefault(resource, {})[check] = reason
    return reasons


def test_every_stacks_manifests_pass_checkov_and_every_suppression_has_a_reason(
    checkov, ansible_project, tmp_path
):
    runs = [program_run(stack, ansible_project) for stack in STACKS]
    for run in runs:
        write_manifests(run, tmp_path)
    results = scan(checkov, tmp_path)  # one checkov start-up for both stacks
    for run in runs:
        checks = results[run.stack]
        failures = [
            f"{c['check_id']} {c['check_name']}: {c['resource']}" for c in checks.get("failed_checks", [])
        ]
        assert not failures, f"{run.stack}: checkov findings:\n" + "\n".join(failures)
        assert len(checks["passed_checks"]) > 300, f"{run.stack}: checkov saw the workloads"
        scanned = {c["resource"] for c in checks["passed_checks"]}
        assert any(r.startswith("Pod.mlstack-training.") for r in scanned), (
            "the training jobs' pods were scanned"
        )
        # checkov does not echo in-manifest reasons back, so read them from the annotations it obeyed.
        reasons = suppression_reasons(run)
        skipped = checks.get("skipped_checks", [])
        assert skipped, (
            "the known exceptions (root GPU daemons, tag-pinned images) are suppressed, not absent"
        )
        for check in skipped:
            reason = reasons.get(check["resource"], {}).get(check["check_id"], "")
            assert len(reason.split()) >= 4, (
                f"{run.stack}: {check['check_id']} on {check['resource']} has no reason"
            )
