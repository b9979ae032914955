"""Integration: the generated dashboards and rules against a real Prometheus scraping the real workloads.

The live scenario (tests/dashboards/rig/scenario.py) runs once for this module under a real Prometheus and
node_exporter (Debian packages) on loopback, scraping every second: a short TensorFlow
MultiWorkerMirroredStrategy training run of two worker processes, then serve-dev serving the model
that run trained under a load test and malformed requests, with infer-worker and stream-ingest on a real
Kafka node, stream-ingest writing its shards to a real HDFS (a NameNode and a DataNode; the releases of
`make releases`); the Kafka node and the NameNode run their roles' JMX exporter agent and rules, so the
data dashboard's Kafka and HDFS panels read them; at the end the DataNode is killed. Every dashboard query
whose metrics exist here must return data, every metric docs/interfaces.md promises must be served by the
workload that promises it, and the alerts that this data can exercise must behave.
"""

import dataclasses
import shutil

import pytest

from dashboards import catalog, contract
from dashboards.boards import training as training_board
from dashboards.params import THRESHOLDS
from dashboards.rules import data, serving, training
from tests.dashboards.rig import live, loopback, scenario, snapshot
from workloads.serving.tfs_config import MODEL_NAME as MODEL

from .conftest import DASHBOARD_FILES, RULE_FILES

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("live-prometheus")]
RUN = scenario.Settings().run_name


def alert_expr(group, name: str, **thresholds) -> str:
    """The expression of alert ``name`` as the builders write it at other thresholds."""
    return group(dataclasses.replace(THRESHOLDS, **thresholds)).alert(name).expr


# Queries evaluated at each observation (tests/dashboards/rig/scenario.py takes them while the workloads run).
PROBES = {
    scenario.TRAINING: {
        "step rate": f'{training.step_rate()}{{run="{RUN}"}}',
        "newest start": f'{training.NEWEST_START}{{run="{RUN}"}}',
        "newest checkpoint": f'{training.NEWEST_CHECKPOINT}{{run="{RUN}"}}',
        "checkpoint too old at 0 s": alert_expr(
            training.group, "TrainingCheckpointTooOld", checkpoint_max_age_seconds=0
        ),
    },
    scenario.SERVING_HEALTHY: {
        "error ratio": f'{serving.ERROR_RATIO}{{model_name="{MODEL}"}}',
        "requests per second": f'{serving.TOTAL}{{model_name="{MODEL}"}}',
        "p50 latency": f'{serving.LATENCY}{{model_name="{MODEL}", quantile="0.5"}}',
        "p99 over a budget of 0 s": alert_expr(
            serving.group, "ServingLatencyP99OverBudget", serving_p99_latency_budget_seconds=0
        ),
        "HDFS free ratio": data.HDFS_FREE_RECORDED,
        "HDFS capacity low under a limit of 1": alert_expr(data.group, "HdfsCapacityLow", hdfs_free_ratio=1),
        "HDFS missing blocks": "hdfs_namenode_missing_blocks",
    },
    scenario.SERVING_ERRORS: {"error ratio": f'{serving.ERROR_RATIO}{{model_name="{MODEL}"}}'},
    scenario.DATANODE_LOST: {
        "live DataNodes": "hdfs_namenode_live_datanodes",
        "dead DataNodes": "hdfs_namenode_dead_datanodes",
    },
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The finished scenario, with Prometheus still up: its final rule groups, the dashboards' results."""
    workdir = tmp_path_factory.mktemp("live")
    dead = f"127.0.0.1:{loopback.free_port()}"  # nothing listens here: a node that is down
    with scenario.run(workdir, dead_nodes=[dead], probes=PROBES) as live_run:
        groups = live.wait_for_rule_evaluations(live_run.stack.prometheus)
        yield {
            "scenario": live_run,
            "stack": live_run.stack,
            "dead": dead,
            "groups": groups,
            "dashboards": snapshot.dashboard_results(live_run),
            "present": live_run.stack.prometheus.metric_names(),
        }


def all_results(run):
    return [result for dashboard in run["dashboards"] for result in dashboard.results]


def single_value(observation: scenario.Observation, probe: str) -> tuple[dict, float]:
    """The one series a probe returned: its labels (without the name) and value."""
    series = observation.values[probe]
    assert len(series) == 1, f"{probe}: expected one series, got {series}"
    labels = {key: value for key, value in series[0]["metric"].items() if key != "__name__"}
    return labels, float(series[0]["value"][1])


def test_every_dashboard_query_on_metrics_that_exist_here_returns_data(run):
    results = all_results(run)
    empty = [result.describe() for result in results if result.status == "no data"]
    assert not empty, "\n".join(empty)
    checked = {result.expression.file.name for result in results if result.status == "data"}
    assert checked == {path.name for path in DASHBOARD_FILES}, "a dashboard was not checked live at all"


def test_the_kafka_panels_and_alert_read_the_real_nodes_jmx_exporter(run):
    """Every query that reads a name of dashboards/exporters/kafka-jmx.txt is checked live and returns data,
    and KafkaUnderReplicatedPartitions stays quiet: one node, one replica, nothing under-replicated."""
    names = catalog.exporter_lists()["kafka-jmx"]
    assert names <= run["stack"].exported_here[scenario.KAFKA_JMX_SOURCE]
    results = [r for r in all_results(run) if contract.metric_names(r.expression) & names]
    assert results, "no dashboard query reads the Kafka JMX exporter's names"
    assert [r.describe() for r in results if r.status != "data"] == []
    assert live.alert_states(run["groups"])["KafkaUnderReplicatedPartitions"] == []


def test_the_hdfs_panels_read_the_real_namenodes_jmx_exporter(run):
    """Every query that reads a name of dashboards/exporters/hdfs-jmx.txt is checked live and returns data
    (over the serving phase, while stream-ingest writes its shards to HDFS)."""
    names = catalog.exporter_lists()["hdfs-jmx"]
    assert names <= run["stack"].exported_here[scenario.HDFS_JMX_SOURCE]
    results = [r for r in all_results(run) if contract.metric_names(r.expression) & names]
    assert results, "no dashboard query reads the HDFS JMX exporter's names"
    assert [r.describe() for r in results if r.status != "data"] == []


def test_hdfs_capacity_low_reads_the_datanodes_disk_and_fires_only_under_its_limit(run, tmp_path):
    """The DataNode's disk is this machine's: the free ratio is the one the file system reports (HDFS
    counts the space a user may use, as ``shutil.disk_usage`` does), so HdfsCapacityLow is pending exactly
    when this disk is fuller than the limit, for the NameNode's instance, and its expression selects that
    instance under a limit of 1 whatever the disk."""
    healthy = run["scenario"].observations[scenario.SERVING_HEALTHY]
    labels, ratio = single_value(healthy, "HDFS free ratio")
    disk = shutil.disk_usage(tmp_path)
    assert abs(ratio - disk.free / disk.total) < 0.02, (ratio, disk)
    instance = labels["instance"]
    assert labels == {"instance": instance, "job": scenario.HDFS_JMX_JOB}
    selected, value = single_value(healthy, "HDFS capacity low under a limit of 1")
    assert selected == labels and abs(value - ratio) < 0.001
    expected = [(instance, "pending")] if ratio < THRESHOLDS.hdfs_free_ratio else []
    assert [(alert["instance"], state) for alert, state in healthy.alerts("HdfsCapacityLow")] == expected


def test_hdfs_missing_blocks_is_quiet_until_the_only_datanode_is_killed_then_pending(run):
    healthy = run["scenario"].observations[scenario.SERVING_HEALTHY]
    labels, missing = single_value(healthy, "HDFS missing blocks")
    assert missing == 0
    assert healthy.alerts("HdfsMissingBlocks") == []

    lost = run["scenario"].observations[scenario.DATANODE_LOST]
    assert single_value(lost, "live DataNodes") == (labels, 0)
    assert single_value(lost, "dead DataNodes") == (labels, 1)
    assert [
        (alert["instance"], alert["severity"], state) for alert, state in lost.alerts("HdfsMissingBlocks")
    ] == [(labels["instance"], "critical", "pending")]


def test_every_workload_query_is_checked_live_not_skipped(run):
    workload_metric = tuple(scenario.DOCUMENTED_PREFIXES.values())
    skipped = [
        result.describe()
        for result in all_results(run)
        if result.status == "not here"
        and all(name.startswith(workload_metric) for name in contract.metric_names(result.expression))
    ]
    assert not skipped, "\n".join(skipped)


def test_every_documented_metric_is_served_by_the_workload_that_documents_it(run):
    documented = catalog.interfaces_metrics()
    exported = run["stack"].exported_here
    problems = []
    for source, prefix in scenario.DOCUMENTED_PREFIXES.items():
        promised = {name for name in documented if name.startswith(prefix)}
        assert promised, f"docs/interfaces.md documents no {prefix}* metric"
        instances = [name for name in exported if name.startswith(source)]
        assert instances, f"no {source} ran in the scenario"
        problems += [
            f"{instance} does not serve {name}, which docs/interfaces.md documents"
            for instance in instances
            for name in sorted(promised - exported[instance])
        ]
    assert not problems, "\n".join(problems)


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


def test_training_alerts_stay_inactive_while_a_healthy_run_steps(run):
    live_run = run["scenario"]
    observation = live_run.observations[scenario.TRAINING]
    assert 0 < live_run.training_steps_observed < live_run.training_summary["steps"], (
        "the observation was not taken while the run was training"
    )
    labels, steps_per_second = single_value(observation, "step rate")
    assert labels == {"run": RUN} and steps_per_second > 0
    assert observation.alerts("TrainingStalled") == []
    assert observation.alerts("TrainingCheckpointTooOld") == []


def test_training_timestamps_are_unix_seconds_of_this_run(run):
    live_run = run["scenario"]
    observation = live_run.observations[scenario.TRAINING]
    launched, _ = live_run.phases[scenario.TRAINING]
    for probe in ("newest start", "newest checkpoint"):
        labels, timestamp = single_value(observation, probe)
        assert labels == {"run": RUN}
        assert launched - 1 <= timestamp <= observation.at, f"{probe}: {timestamp} is not a time in this run"


def test_checkpoint_too_old_selects_the_live_run_once_its_threshold_is_crossed(run):
    observation = run["scenario"].observations[scenario.TRAINING]
    labels, age = single_value(observation, "checkpoint too old at 0 s")
    assert labels == {"run": RUN}
    assert 0 < age < observation.at - run["scenario"].phases[scenario.TRAINING][0]


def test_serve_dev_serves_the_model_the_live_run_trained(run):
    live_run = run["scenario"]
    assert live_run.training_summary["run_name"] == RUN
    assert live_run.training_summary["world_size"] == scenario.TRAINING_WORKERS
    assert live_run.served_version == "1"


def test_serving_error_alert_is_quiet_on_healthy_traffic_and_pending_after_malformed_requests(run):
    live_run = run["scenario"]
    assert set(live_run.malformed_codes) == {400}, "serve-dev must answer malformed requests with 400"
    healthy = live_run.observations[scenario.SERVING_HEALTHY]
    _, requests_per_second = single_value(healthy, "requests per second")
    assert requests_per_second >= THRESHOLDS.serving_error_min_requests_per_second
    _, ratio = single_value(healthy, "error ratio")
    assert ratio < THRESHOLDS.serving_error_ratio
    assert healthy.alerts("ServingErrorRateHigh") == []

    errors = live_run.observations[scenario.SERVING_ERRORS]
    _, ratio = single_value(errors, "error ratio")
    assert ratio > THRESHOLDS.serving_error_ratio
    assert [
        (labels["model_name"], labels["severity"], state)
        for labels, state in errors.alerts("ServingErrorRateHigh")
    ] == [(MODEL, "critical", "pending")]


def test_serving_latency_is_recorded_in_seconds_in_line_with_the_load_test(run):
    live_run = run["scenario"]
    healthy = live_run.observations[scenario.SERVING_HEALTHY]
    _, server_p50 = single_value(healthy, "p50 latency")
    client_p50 = live_run.loadtest["latency_ms"]["p50"] / 1000
    # The server's part of a request is at most the client's round trip (plus the error of TF
    # Serving's x1.8 buckets); a unit error (microseconds or milliseconds as seconds) is off by 1000x.
    assert client_p50 / 20 < server_p50 < client_p50 * 2, (server_p50, client_p50)
    over_budget = healthy.values["p99 over a budget of 0 s"]
    assert [(s["metric"]["model_name"], s["metric"]["quantile"]) for s in over_budget] == [(MODEL, "0.99")]


def test_prometheus_writes_the_series_its_committed_list_names(run):
    assert catalog.exporter_lists()["prometheus"] <= run["present"]


def test_dashboard_pngs_are_drawn_from_the_live_data(run, tmp_path):
    drawn = snapshot.draw_dashboards(run["dashboards"], tmp_path)
    assert sorted(png.name for png in drawn) == sorted(
        f"dashboard-{path.stem}.png" for path in DASHBOARD_FILES
    )
    for png in drawn:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert 10_000 < len(data) < 150 * 1024, f"{png}: {len(data)} bytes"


@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        (
            'rate(node_cpu_seconds_total{job="node"}[$__rate_interval])',
            'rate(node_cpu_seconds_total{job="node-exporter"}[$__rate_interval])',
        ),
        # A label name typo behind a dashboard variable: Grafana's "All" (.*) would match it anyway.
        ('mlstack_train_resumed_step{run_name=~"$run"}', 'mlstack_train_resumed_step{run=~"$run"}'),
    ],
)
def test_a_query_with_a_wrong_label_on_a_present_metric_is_caught_as_no_data(run, wrong, right):
    training = next(dashboard for dashboard in run["dashboards"] if dashboard.path.stem == training_board.UID)
    expressions = [
        contract.Expression(training.path, f"panel 0 {name!r} query A", expr, "query")
        for name, expr in (("wrong", wrong), ("right", right))
    ]
    results = live.check_queries(run["stack"].prometheus, expressions, training.start, training.end)
    assert [result.status for result in results] == ["no data", "data"]
