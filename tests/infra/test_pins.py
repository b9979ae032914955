"""Every pinned third-party version appears in docs/infra.md's table with its upstream source, and its
air-gap steps name every artifact a disconnected install needs, at the pinned version."""

from __future__ import annotations

import re

import pytest

from infra.config import Serving
from infra.config.keys import PROJECT_KEYS
from infra.specs import versions
from tests.infra.program import ROOT

DOCS = ROOT / "docs" / "infra.md"


def section(title: str) -> str:
    text = DOCS.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table_rows() -> dict[str, tuple[str, str]]:
    """Component -> (version, upstream source) of the "Pinned versions" table."""
    rows = {}
    for line in section("Pinned versions").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in {"component", "---"} and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def pins() -> list[tuple[str, str]]:
    """(version, upstream source or repository) of every pin in versions.py and the settings' defaults."""
    found: list[tuple[str, str]] = []
    for name, value in vars(versions).items():
        if isinstance(value, versions.Chart):
            found.append((value.version, value.repository))
        elif name.endswith("_IMAGE"):
            found.append((value, ""))
    found.append((versions.TRAINING_OPERATOR_VERSION, "https://github.com/kubeflow/training-operator"))
    found.append((Serving().image, ""))
    found.append((PROJECT_KEYS["kubernetesVersion"][1], ""))
    return found


def test_the_table_holds_every_pin_with_its_upstream_source():
    rows = table_rows()
    assert len(rows) == len(pins()), "one row per pin, no stale rows"
    by_version = {version: source for version, source in rows.values()}
    for version, repository in pins():
        assert version in by_version, f"{version} is pinned but not in the Pinned versions table"
        assert by_version[version].startswith("https://"), f"{version}: no upstream source"
        if repository:
            assert by_version[version] == repository


@pytest.mark.parametrize(
    "chart", [v for v in vars(versions).values() if isinstance(v, versions.Chart)], ids=lambda c: c.name
)
def test_the_air_gap_steps_pull_every_chart_at_its_pin(chart):
    steps = section("Air-gapped installs")
    aliases = dict(re.findall(r"helm repo add (\S+) (\S+)", steps))
    alias = next(a for a, url in aliases.items() if url == chart.repository)
    assert f"helm pull {alias}/{chart.name} --version {chart.version} -d charts/" in steps


def test_the_air_gap_steps_name_the_operator_and_every_image_at_its_pin():
    steps = section("Air-gapped installs")
    assert (
        f"--branch {versions.TRAINING_OPERATOR_VERSION} https://github.com/kubeflow/training-operator"
        in steps
    )
    images = [v for n, v in vars(versions).items() if n.endswith("_IMAGE")] + [Serving().image]
    for image in images:
        assert f"`{image}`" in steps, image
    assert versions.ARGO_WORKFLOWS.app_version in steps
    for project_image in ("mlstack-training", "mlstack-workloads"):
        assert project_image in steps
