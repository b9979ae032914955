"""``python -m tests.dashboards.rig.snapshot``: run the dashboards against real data here and draw them as PNGs.

Runs the live scenario (:mod:`tests.dashboards.rig.scenario`): a real Prometheus and node_exporter on loopback
(Debian packages) scraping a short real TensorFlow multi-worker training run, then ``serve-dev``
serving the model it trained under a load test, with ``infer-worker`` and ``stream-ingest`` on a real
Kafka node and ``stream-ingest``'s shards on a real HDFS, the Kafka node and the NameNode running their
roles' JMX exporter agents. Then it runs every dashboard query over that time (``$__rate_interval``
filled in as Grafana would, variables as "any value"), reports which returned data, and draws each
dashboard's time series panels that have data into ``<output>/dashboard-<uid>.png``, each over the
phase its workloads ran in (the nodes over the whole run). The integration test
(tests/dashboards/test_live_prometheus.py) runs the same scenario, shorter.

Needs the ``tf``, ``serving`` and ``dashboards`` extras and the Debian packages of ``make system-deps``;
takes two to three minutes on two CPU cores (``make snapshots``).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import tempfile
from collections.abc import Sequence

from dashboards import contract
from dashboards.boards import data, serving, training
from dashboards.generate import GRAFANA_DIR, ROOT
from tests.dashboards.rig import live, plot, scenario

DASHBOARD_FILES = sorted((ROOT / GRAFANA_DIR).glob("*.json"))
# Longer than the integration test's run, for fuller pictures.
SNAPSHOT_SETTINGS = scenario.Settings(epochs=16, load_seconds=20, kafka_rounds=10)
PHASE_OF_DASHBOARD = {
    training.UID: scenario.TRAINING,
    serving.UID: scenario.SERVING,
    data.UID: scenario.SERVING,
}


@dataclasses.dataclass(frozen=True)
class DashboardRun:
    """A dashboard's queries run over its time range (unix seconds)."""

    path: pathlib.Path
    start: float
    end: float
    results: list[live.QueryResult]


def dashboard_window(live_run: scenario.Scenario, uid: str) -> tuple[float, float]:
    """The time range a dashboard is checked and drawn over: the phase its workloads ran in (as one
    would pick Grafana's time range), or the whole scenario for the nodes."""
    phase = PHASE_OF_DASHBOARD.get(uid)
    return live_run.phases[phase] if phase else (live_run.stack.started, live_run.ended)


def dashboard_results(live_run: scenario.Scenario) -> list[DashboardRun]:
    """Every dashboard query run over its dashboard's time range."""
    runs = []
    for path in DASHBOARD_FILES:
        start, end = dashboard_window(live_run, contract.load_dashboard(path)["uid"])
        expressions = contract.dashboard_expressions(path)
        runs.append(
            DashboardRun(
                path, start, end, live.check_queries(live_run.stack.prometheus, expressions, start, end)
            )
        )
    return runs


def draw_dashboards(runs: Sequence[DashboardRun], output: pathlib.Path) -> list[pathlib.Path]:
    """A PNG per dashboard with at least one time series panel to draw: one whose queries on metrics
    that exist here all returned data (queries on cluster-only metrics are left out, as Grafana
    would show nothing for them)."""
    drawn = []
    for run in runs:
        board = contract.load_dashboard(run.path)
        by_panel: dict[int | None, list[live.QueryResult]] = {}
        for result in run.results:
            by_panel.setdefault(result.expression.panel, []).append(result)
        panels = []
        for panel in board["panels"]:
            mine = [r for r in by_panel.get(panel["id"], []) if r.status != "not here"]
            if panel["type"] == "timeseries" and mine and all(r.status == "data" for r in mine):
                panels.append((panel, mine))
        if panels:
            target = output / f"dashboard-{board['uid']}.png"
            drawn.append(plot.draw(board["title"], panels, target, run.start, run.end))
    return drawn


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.dashboards.rig.snapshot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "docs" / "images", help="PNG directory")
    parser.add_argument(
        "--epochs", type=int, default=SNAPSHOT_SETTINGS.epochs, help="epochs of the training run (its length)"
    )
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=SNAPSHOT_SETTINGS.load_seconds,
        help="seconds of serving load (Kafka traffic is spread over them too)",
    )
    args = parser.parse_args(argv)
    settings = dataclasses.replace(SNAPSHOT_SETTINGS, epochs=args.epochs, load_seconds=args.load_seconds)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="mlstack-snapshot-") as tmp,
        scenario.run(pathlib.Path(tmp), settings, progress=progress) as live_run,
    ):
        runs = dashboard_results(live_run)
        failures = [r.describe() for run in runs for r in run.results if r.status == "no data"]
        for result in (r for run in runs for r in run.results):
            print(result.describe(), file=sys.stderr)
        for png in draw_dashboards(runs, args.output):
            print(f"wrote {png} ({png.stat().st_size // 1024} KiB)")
    if failures:
        print("Queries on metrics that exist here returned no data:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
