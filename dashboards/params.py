"""The numbers and names the alerts and dashboards are built from, each documented in one place.

Change a threshold here, run ``python -m dashboards`` and commit the regenerated files; the promtool
tests in ``tests/dashboards/promtool/`` use the defaults below, so they fail when a threshold moves
without its tests. ``docs/runbooks.md`` names the parameter behind every alert.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Alert thresholds and durations. Durations are Prometheus duration strings."""

    gpu_temperature_celsius: float = 85
    """GpuTooHot fires above this GPU core temperature (datacentre GPUs throttle from about 87-90 C)."""
    gpu_temperature_for: str = "5m"
    """How long the GPU must stay above gpu_temperature_celsius."""

    gpu_idle_utilisation_percent: float = 10
    """GpuIdleWhileTraining fires when a training pod's GPUs average less than this utilisation..."""
    gpu_idle_window: str = "10m"
    """...over this window (the average smooths out evaluation and checkpoint pauses)..."""
    gpu_idle_for: str = "15m"
    """...for this long."""

    gpu_xid_for: str = "1m"
    """GpuXidErrors fires once a non-zero XID code has been reported for this long."""

    training_stall_window: str = "10m"
    """TrainingStalled fires when a run completed no optimizer step in this window (and its newest
    worker started longer ago than the window, so start-up and data loading do not count)."""
    training_stall_for: str = "5m"
    """How long the run must stay stalled."""

    checkpoint_max_age_seconds: float = 3600
    """TrainingCheckpointTooOld fires when a run's newest checkpoint (or, before the first one, its
    newest worker's start) is older than this."""
    checkpoint_age_for: str = "10m"
    """How long the checkpoint must stay too old."""

    serving_p99_latency_budget_seconds: float = 0.25
    """ServingLatencyP99OverBudget fires when TF Serving's p99 request latency exceeds this
    (TF Serving reports microseconds; the rules convert)."""
    serving_latency_for: str = "10m"
    """How long p99 must stay over budget."""

    serving_error_ratio: float = 0.05
    """ServingErrorRateHigh fires when more than this fraction of requests end with a status other than OK..."""
    serving_error_min_requests_per_second: float = 0.1
    """...while the model receives at least this many requests per second (a single failed probe
    on an idle model is not an incident)."""
    serving_error_for: str = "5m"
    """How long the error ratio must stay high."""

    hpa_pinned_for: str = "15m"
    """ServingHpaPinnedAtMax fires when the serving HPA has run at its maximum replicas this long."""

    kafka_under_replicated_for: str = "10m"
    """KafkaUnderReplicatedPartitions fires when a broker reports under-replicated partitions this long."""

    kafka_consumer_lag_messages: float = 10000
    """KafkaConsumerLagHigh fires when a Kafka service's consumer group is this many messages behind on its
    topic, summed over partitions, as the service reports it..."""
    kafka_consumer_lag_for: str = "15m"
    """...for this long."""

    hdfs_free_ratio: float = 0.15
    """HdfsCapacityLow fires when less than this fraction of HDFS capacity is free..."""
    hdfs_capacity_for: str = "15m"
    """...for this long."""

    hdfs_missing_blocks_for: str = "5m"
    """HdfsMissingBlocks fires when the NameNode reports missing blocks this long."""

    node_down_for: str = "5m"
    """NodeDown fires when Prometheus cannot scrape a node's node_exporter this long."""


@dataclasses.dataclass(frozen=True)
class Deployment:
    """Names the queries select on; they must match what the infra layer deploys and the workloads name
    (docs/interfaces.md). This package imports neither, so tests/dashboards/test_facts.py holds each
    name equal to its definition there."""

    training_namespace: str = "mlstack-training"
    """Namespace of the training jobs (infra.specs.namespaces.TRAINING)."""
    serving_namespace: str = "mlstack-serving"
    """Namespace of TF Serving and its autoscaler (infra.specs.namespaces.SERVING)."""
    serving_hpa: str = "tf-serving"
    """HorizontalPodAutoscaler of the TF Serving Deployment (infra.specs.serving.NAME)."""
    model_name: str = "fashion_mnist"
    """The model TF Serving serves (workloads.serving.tfs_config.MODEL_NAME)."""
    node_exporter_job: str = "node-exporter"
    """Prometheus job label of node_exporter targets (kube-prometheus-stack's default)."""
    runbook_base_url: str = "https://github.com/mlstack/mlstack/blob/main/docs/runbooks.md"
    """Every alert's runbook_url is this plus '#' and the alert name in lower case (a Markdown heading anchor)."""


THRESHOLDS = Thresholds()
DEPLOYMENT = Deployment()
