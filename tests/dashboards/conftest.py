"""Shared fixtures of the dashboards tests: the generated files and a real node_exporter's metric names."""

import pathlib
import shutil

import pytest

from dashboards import catalog, contract
from tests.dashboards.rig import loopback

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED = ROOT / "dashboards" / "generated"
RULE_FILES = sorted((GENERATED / "prometheus").glob("*.rules.yaml"))
DASHBOARD_FILES = sorted((GENERATED / "grafana").glob("*.json"))
PROMTOOL_TESTS = sorted((pathlib.Path(__file__).parent / "promtool").glob("*.test.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def require_binary(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian package)")


@pytest.fixture(scope="session")
def node_exporter_names(tmp_path_factory) -> set[str]:
    """Metric names a real node_exporter (Debian's prometheus-node-exporter) serves on this machine."""
    require_binary("prometheus-node-exporter")
    with loopback.node_exporter(tmp_path_factory.mktemp("node-exporter")) as address:
        return catalog.scrape_names(f"http://{address}/metrics")


@pytest.fixture(scope="session")
def all_expressions() -> list[contract.Expression]:
    """Every dashboard query, dashboard variable query and rule expression in the generated files."""
    return [e for path in DASHBOARD_FILES for e in contract.dashboard_expressions(path)] + [
        e for path in RULE_FILES for e in contract.rule_expressions(path)
    ]
