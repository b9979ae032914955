"""``python -m dashboards.snapshot``: run the dashboards against real data here and draw them as PNGs.

Starts a real node_exporter and a real Prometheus on loopback (Debian packages) that scrapes it
and itself every second and evaluates the generated rules; after ``--seconds`` of data it runs every
dashboard query (as Grafana would, ``$__rate_interval`` and variables filled in), reports which
returned data, and draws each dashboard's time series panels that have data into
``<output>/dashboard-<uid>.png``. The integration test (tests/dashboards/test_live_prometheus.py)
uses the same steps.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import pathlib
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence

from dashboards import catalog, contract, live, loopback, plot
from dashboards.generate import GRAFANA_DIR, PROMETHEUS_DIR, ROOT
from dashboards.params import DEPLOYMENT

RULE_FILES = sorted((ROOT / PROMETHEUS_DIR).glob("*.rules.yaml"))
DASHBOARD_FILES = sorted((ROOT / GRAFANA_DIR).glob("*.json"))


@dataclasses.dataclass(frozen=True)
class Stack:
    """A running Prometheus, when it started scraping, and the names each source running here exports."""

    prometheus: loopback.Prometheus
    started: float
    exported_here: dict[str, set[str]]


@contextlib.contextmanager
def stack(
    workdir: pathlib.Path,
    dead_nodes: Sequence[str] = (),
    jobs: Sequence[loopback.ScrapeJob] = (),
    exported_here: Mapping[str, set[str]] | None = None,
) -> Iterator[Stack]:
    """node_exporter and Prometheus (with the generated rules) on loopback.

    ``jobs`` are more sources running here (training workers, the development server); their targets
    must be up before this yields, and ``exported_here`` names what each must export (e.g. the
    training metrics of docs/interfaces.md), so a name they fail to export fails the live checks.
    ``dead_nodes`` (``host:port`` where nothing listens) are scraped as node_exporter targets too,
    to exercise NodeDown.
    """
    with loopback.node_exporter(workdir) as node_address:
        exported = {
            "node_exporter": catalog.scrape_names(f"http://{node_address}/metrics"),
            **(exported_here or {}),
        }
        scraped = [loopback.ScrapeJob(DEPLOYMENT.node_exporter_job, [node_address, *dead_nodes]), *jobs]
        with loopback.prometheus(workdir / "prometheus", scraped, RULE_FILES) as prometheus:
            started = time.time()
            prometheus.wait_for_targets(
                [prometheus.address, node_address, *(t for job in jobs for t in job.targets)]
            )
            yield Stack(prometheus, started, exported)


def dashboard_results(running: Stack, end: float) -> dict[pathlib.Path, list[live.QueryResult]]:
    """Every dashboard query run over the stack's lifetime, per dashboard file."""
    return {
        path: live.check_queries(
            running.prometheus, contract.dashboard_expressions(path), running.started, end
        )
        for path in DASHBOARD_FILES
    }


def draw_dashboards(
    results: dict[pathlib.Path, list[live.QueryResult]], output: pathlib.Path, start: float
) -> list[pathlib.Path]:
    """A PNG per dashboard with at least one time series panel whose queries all returned data."""
    drawn = []
    for path, dashboard_results in results.items():
        board = contract.load_dashboard(path)
        by_panel: dict[int | None, list[live.QueryResult]] = {}
        for result in dashboard_results:
            by_panel.setdefault(result.expression.panel, []).append(result)
        panels = []
        for panel in board["panels"]:
            mine = by_panel.get(panel["id"], [])
            if panel["type"] == "timeseries" and mine and all(r.status == "data" for r in mine):
                panels.append((panel, mine))
        if panels:
            target = output / f"dashboard-{board['uid']}.png"
            drawn.append(plot.draw(board["title"], panels, target, start))
    return drawn


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboards.snapshot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "docs" / "images", help="PNG directory")
    parser.add_argument("--seconds", type=float, default=30, help="seconds of data to collect before drawing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlstack-snapshot-") as tmp, stack(pathlib.Path(tmp)) as running:
        print(
            f"Prometheus at {running.prometheus.url}: collecting {args.seconds:g}s of data...",
            file=sys.stderr,
        )
        time.sleep(args.seconds)
        end = time.time()
        results = dashboard_results(running, end)
        failures = [r.describe() for rs in results.values() for r in rs if r.status == "no data"]
        for result in (r for rs in results.values() for r in rs):
            print(result.describe(), file=sys.stderr)
        for png in draw_dashboards(results, args.output, running.started):
            print(f"wrote {png} ({png.stat().st_size // 1024} KiB)")
    if failures:
        print("Queries on metrics that exist here returned no data:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
