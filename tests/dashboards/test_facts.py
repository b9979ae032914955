"""One definition per fact across the layers: each name dashboards/ restates from the workloads or the
Pulumi program equals its definition there.

dashboards/ imports neither (test_layout.py), so it states these names itself, each in one place:
dashboards/params.py (the deployment's names), dashboards/tf_serving.py (TF Serving's metric names),
dashboards/selectors.py (selectors built from params). These tests import both sides; the live rig
(tests/dashboards/rig/) imports the workloads' definitions and restates none of them.
"""

import re

import pytest

from dashboards import catalog, contract, promql, tf_serving
from dashboards.params import DEPLOYMENT
from dashboards.rules import data as data_rules
from infra.specs import namespaces
from infra.specs import serving as serving_specs
from tests.dashboards.rig.scenario import DOCUMENTED_PREFIXES
from workloads.serving import tfs_config
from workloads.serving.codes import Code
from workloads.serving.dev import metrics as dev_metrics
from workloads.streaming import kafka
from workloads.streaming.infer_worker import WorkerMetrics
from workloads.streaming.stream_ingest import IngestMetrics
from workloads.training.metrics import TrainingMetrics

from .conftest import ROOT

KAFKA_TOPICS = (kafka.REQUESTS_TOPIC, kafka.RESULTS_TOPIC, kafka.DLQ_TOPIC, kafka.INGEST_TOPIC)
# The series prometheus_client writes for a metric family of each type.
SERIES_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
# Each workloads name may be written as a string literal in at most this file of dashboards/ or the rig.
WRITTEN_ONCE = {
    tfs_config.MODEL_NAME: "dashboards/params.py",
    tfs_config.METRICS_PATH: None,
    dev_metrics.REQUEST_COUNT: "dashboards/tf_serving.py",
    dev_metrics.REQUEST_LATENCY: "dashboards/tf_serving.py",
    dev_metrics.RUNTIME_LATENCY: "dashboards/tf_serving.py",
    **dict.fromkeys(KAFKA_TOPICS),
}


def registry_series(registry) -> set[str]:
    """The series names a prometheus_client registry serves, labelled metrics with no child yet included."""
    return {family.name + suffix for family in registry.collect() for suffix in SERIES_SUFFIXES[family.type]}


def workload_series() -> set[str]:
    """Every series name the workloads' own metrics code serves (training workers, Kafka services,
    the development server standing in for TF Serving)."""
    names = set()
    for registry in (
        TrainingMetrics(run="facts", framework="tensorflow", rank=0).registry,
        WorkerMetrics().registry,
        IngestMetrics().registry,
    ):
        names |= registry_series(registry)
    server = dev_metrics.TfServingMetrics()
    server.record_request(tfs_config.MODEL_NAME, Code.OK, "predict", "REST", 1000.0)
    server.record_runtime(tfs_config.MODEL_NAME, "predict", 500.0)
    return names | catalog.exposition_names(server.render())


def test_the_serving_model_name_is_the_one_the_workloads_export():
    assert DEPLOYMENT.model_name == tfs_config.MODEL_NAME


def test_tf_serving_metric_names_are_the_development_servers():
    assert (tf_serving.REQUEST_COUNT, tf_serving.REQUEST_LATENCY, tf_serving.RUNTIME_LATENCY) == (
        dev_metrics.REQUEST_COUNT,
        dev_metrics.REQUEST_LATENCY,
        dev_metrics.RUNTIME_LATENCY,
    )


def test_the_consumer_lag_alert_reads_the_lag_gauge_of_every_kafka_service():
    gauges = {
        family.name
        for registry in (WorkerMetrics().registry, IngestMetrics().registry)
        for family in registry.collect()
        if family.type == "gauge" and family.name.endswith("_consumer_lag")
    }
    assert len(gauges) == 2, gauges
    assert promql.metric_names(data_rules.KAFKA_LAG) == gauges


def test_the_namespaces_and_the_autoscaler_are_the_ones_infra_deploys():
    assert (DEPLOYMENT.training_namespace, DEPLOYMENT.serving_namespace, DEPLOYMENT.serving_hpa) == (
        namespaces.TRAINING,
        namespaces.SERVING,
        serving_specs.NAME,
    )


def test_every_workload_metric_a_board_or_rule_reads_is_one_the_workloads_serve(all_expressions):
    read = set().union(*(contract.metric_names(e) for e in all_expressions))
    workload_metrics = {name for name in read if name.startswith(tuple(DOCUMENTED_PREFIXES.values()))}
    assert workload_metrics, "no board or rule reads a workload metric: the prefixes are wrong"
    unknown = sorted(workload_metrics - workload_series())
    assert not unknown, f"boards or rules read series no workload serves: {unknown}"


@pytest.mark.parametrize("value", list(WRITTEN_ONCE))
def test_dashboards_and_the_rig_write_each_workloads_name_in_one_place_at_most(value):
    literal = re.compile(rf"""["']{re.escape(value)}""")
    paths = sorted([*(ROOT / "dashboards").rglob("*.py"), *(ROOT / "tests/dashboards/rig").rglob("*.py")])
    written = [str(p.relative_to(ROOT)) for p in paths if literal.search(p.read_text(encoding="utf-8"))]
    allowed = [WRITTEN_ONCE[value]] if WRITTEN_ONCE[value] else []
    assert written == allowed, f"{value!r} is defined by the workloads: import it (rig) or state it once"
