"""Data-tier alerts: Kafka replication and consumer lag, HDFS capacity and missing blocks.

Replication and HDFS names are the ones docs/interfaces.md asks the Kafka and HDFS roles' JMX exporter
rules to produce. Consumer lag is the Kafka services' own gauge (infer-worker and stream-ingest, one
consumer group and topic each, scraped as jobs named after their Services): the stack deploys no
kafka_exporter, which takes a SCRAM password only as a command-line flag. While every consumer of a
group is down its lag has no series; the chart's KubeDeploymentReplicasMismatch and
KubePodCrashLooping alerts cover that (docs/runbooks.md).
"""

from __future__ import annotations

from dashboards.params import THRESHOLDS, Thresholds
from dashboards.rules.model import Alert, Recording, RuleGroup

# Shared with the data dashboard, which draws these expressions as they are (per service, per NameNode).
KAFKA_LAG = "sum by (namespace, job) (mlstack_infer_consumer_lag) or sum by (namespace, job) (mlstack_ingest_consumer_lag)"
HDFS_FREE = "hdfs_namenode_capacity_remaining_bytes / hdfs_namenode_capacity_total_bytes"
KAFKA_LAG_RECORDED = "namespace_job:mlstack_consumer_lag:sum"
HDFS_FREE_RECORDED = "instance:hdfs_namenode_capacity_remaining_bytes:ratio"


def group(t: Thresholds = THRESHOLDS) -> RuleGroup:
    """The group at thresholds ``t`` (the integration test evaluates alerts at other thresholds live)."""
    return RuleGroup(
        name="mlstack-data",
        recordings=(Recording(KAFKA_LAG_RECORDED, KAFKA_LAG), Recording(HDFS_FREE_RECORDED, HDFS_FREE)),
        alerts=(*_kafka_alerts(t), *_hdfs_alerts(t)),
    )


def _kafka_alerts(t: Thresholds) -> tuple[Alert, ...]:
    return (
        Alert(
            "KafkaUnderReplicatedPartitions",
            "kafka_server_replicamanager_underreplicatedpartitions > 0",
            for_=t.kafka_under_replicated_for,
            severity="warning",
            summary="Kafka partitions are under-replicated.",
            description=(
                "Broker {{ $labels.instance }} leads {{ $value }} partitions with fewer in-sync replicas than "
                f"replicas for {t.kafka_under_replicated_for}; one more broker failure may lose data."
            ),
        ),
        Alert(
            "KafkaConsumerLagHigh",
            f"{KAFKA_LAG_RECORDED} > {t.kafka_consumer_lag_messages:g}",
            for_=t.kafka_consumer_lag_for,
            severity="warning",
            summary="A Kafka consumer group falls behind.",
            description=(
                "{{ $labels.job }} in {{ $labels.namespace }} is {{ $value }} messages behind on its topic, "
                f"summed over its partitions (limit {t.kafka_consumer_lag_messages:g})."
            ),
        ),
    )


def _hdfs_alerts(t: Thresholds) -> tuple[Alert, ...]:
    return (
        Alert(
            "HdfsCapacityLow",
            f"{HDFS_FREE_RECORDED} < {t.hdfs_free_ratio:g}",
            for_=t.hdfs_capacity_for,
            severity="warning",
            summary="HDFS is running out of space.",
            description=(
                "Only {{ $value | humanizePercentage }} of the HDFS capacity behind NameNode "
                f"{{{{ $labels.instance }}}} is free (limit {t.hdfs_free_ratio:g})."
            ),
        ),
        Alert(
            "HdfsMissingBlocks",
            "hdfs_namenode_missing_blocks > 0",
            for_=t.hdfs_missing_blocks_for,
            severity="critical",
            summary="HDFS has blocks with no live replica.",
            description=(
                "NameNode {{ $labels.instance }} reports {{ $value }} missing blocks: files that use them "
                "cannot be read until a DataNode holding a replica returns."
            ),
        ),
    )
