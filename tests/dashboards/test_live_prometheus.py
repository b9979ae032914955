"""Integration: the generated dashboards and rules against a real Prometheus scraping real exporters here.

A real node_exporter and a real Prometheus (Debian packages) run on loopback; Prometheus scrapes
node_exporter, itself, and a node-exporter target that is down, every second, and evaluates the
generated rule files. Every dashboard query whose metrics exist here must return data; the others
read only names from the committed exporter lists, docs/interfaces.md or recording rules.
"""

import time

import pytest

from dashboards import catalog, contract, live, loopback, snapshot

from .conftest import DASHBOARD_FILES, RULE_FILES

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-prometheus")]
# Seconds of data to collect: enough for rate() over $__rate_interval (4 s here) to have points.
COLLECT_SECONDS = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The stack after a few seconds of scraping: Prometheus, rule groups, query results, present names."""
    workdir = tmp_path_factory.mktemp("live")
    dead = f"127.0.0.1:{loopback.free_port()}"  # nothing listens here: a node that is down
    with snapshot.stack(workdir, dead_nodes=[dead]) as running:
        time.sleep(COLLECT_SECONDS)
        groups = live.wait_for_rule_evaluations(running.prometheus)
        end = time.time()
        yield {
            "stack": running,
            "dead": dead,
            "groups": groups,
            "results": snapshot.dashboard_results(running, end),
            "present": running.prometheus.metric_names(),
        }


def all_results(run):
    return [result for results in run["results"].values() for result in results]


def test_every_dashboard_query_on_metrics_that_exist_here_returns_data(run):
    results = all_results(run)
    empty = [result.describe() for result in results if result.status == "no data"]
    assert not empty, "\n".join(empty)
    checked = {result.expression.file.name for result in results if result.status == "data"}
    assert "mlstack-gpu-nodes.json" in checked, "node_exporter panels were not checked live"


def test_queries_not_checked_live_read_only_names_documented_elsewhere(run):
    not_here = [result for result in all_results(run) if result.status == "not here"]
    known = catalog.known_metrics(contract.recording_rule_names(RULE_FILES))
    unknown = [
        f"{r.describe()}: {name} is unknown" for r in not_here for name in sorted(r.missing - known.keys())
    ]
    assert not unknown, "\n".join(unknown)
    assert live.expected_here_problems(not_here, run["stack"].exported_here) == []


def test_every_rule_group_loads_and_evaluates_without_error(run):
    assert live.rule_problems(run["groups"], RULE_FILES, run["present"]) == []


def test_node_down_is_pending_for_the_dead_target_only(run):
    states = live.alert_states(run["groups"])["NodeDown"]
    assert [(alert["labels"]["instance"], alert["state"]) for alert in states] == [(run["dead"], "pending")]


def test_prometheus_writes_the_series_its_committed_list_names(run):
    assert catalog.exporter_lists()["prometheus"] <= run["present"]


def test_dashboard_pngs_are_drawn_from_the_live_data(run, tmp_path):
    drawn = snapshot.draw_dashboards(run["results"], tmp_path, run["stack"].started)
    assert tmp_path / "dashboard-mlstack-gpu-nodes.png" in drawn
    for png in drawn:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert 10_000 < len(data) < 250_000, f"{png}: {len(data)} bytes"
    assert len(DASHBOARD_FILES) >= len(drawn)


def test_a_query_with_a_wrong_label_on_a_present_metric_is_caught_as_no_data(run):
    wrong = contract.Expression(
        DASHBOARD_FILES[0],
        "panel 0 'typo' query A",
        'rate(node_cpu_seconds_total{job="node"}[$__rate_interval])',
        "query",
    )
    right = contract.Expression(
        DASHBOARD_FILES[0],
        "panel 0 'right' query A",
        "rate(node_cpu_seconds_total[$__rate_interval])",
        "query",
    )
    stack = run["stack"]
    results = live.check_queries(stack.prometheus, [wrong, right], stack.started, time.time())
    assert [result.status for result in results] == ["no data", "data"]
