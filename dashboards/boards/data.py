"""Data: Kafka consumer lag and replication, the inference worker's dead letters, ingestion, HDFS capacity and blocks.

Kafka and HDFS metric names are the ones docs/interfaces.md asks the data-tier roles' exporters to produce.
"""

from __future__ import annotations

from dashboards.expr import sum_rate
from dashboards.panels import Board, Graph, Query, Row, Stat
from dashboards.params import THRESHOLDS
from dashboards.rules.data import HDFS_FREE, KAFKA_LAG

UID = "mlstack-data"


def board() -> Board:
    return Board(
        uid=UID,
        title="mlstack / Data",
        description="Kafka lag and replication, inference dead letters, streaming ingestion, HDFS capacity and blocks.",
        rows=[_kafka(), _ingestion(), _hdfs_now(), _hdfs_over_time()],
        tags=("mlstack", "data", "kafka", "hdfs"),
    )


def _kafka() -> Row:
    return Row(
        "Kafka",
        [
            Graph(
                "Consumer lag",
                "Messages each Kafka service's consumer group is behind the high watermark on its topic, summed "
                "over partitions, as the inference worker and the ingestion service report it (KafkaConsumerLagHigh); "
                "a service with no replica running reports nothing.",
                [Query(KAFKA_LAG, "{{job}}")],
                min=0,
                width=24,
            ),
            Graph(
                "Partitions not fully replicated",
                "Under-replicated partitions per broker, and offline partitions per controller.",
                [
                    Query(
                        "sum by (instance) (kafka_server_replicamanager_underreplicatedpartitions)",
                        "{{instance}} under-replicated",
                    ),
                    Query(
                        "sum by (instance) (kafka_controller_kafkacontroller_offlinepartitionscount)",
                        "{{instance}} offline",
                    ),
                ],
                min=0,
            ),
            Graph(
                "Inference outcomes and dead letters",
                "Requests the inference worker consumed per outcome, and messages it sent to the dead-letter topic per reason.",
                [
                    Query(sum_rate("mlstack_infer_messages_total", labels=["outcome"]), "{{outcome}}"),
                    Query(
                        sum_rate("mlstack_infer_dead_letters_total", labels=["reason"]),
                        "dead letter: {{reason}}",
                    ),
                ],
                unit="ops",
                min=0,
            ),
        ],
    )


def _ingestion() -> Row:
    return Row(
        "Ingestion",
        [
            Graph(
                "Records ingested",
                "Records the streaming ingestion appends to shards per second.",
                [Query(sum_rate("mlstack_ingest_records_total"), "records")],
                unit="ops",
                min=0,
            ),
            Graph(
                "Shards committed",
                "Shards committed together with their Kafka offsets, per second.",
                [Query(sum_rate("mlstack_ingest_shards_committed_total"), "shards")],
                unit="ops",
                min=0,
            ),
        ],
    )


def _hdfs_now() -> Row:
    return Row(
        "HDFS",
        [
            Stat(
                "Free capacity",
                "Share of HDFS capacity still free; red below the HdfsCapacityLow threshold.",
                Query(f"min({HDFS_FREE})"),
                unit="percentunit",
                thresholds=[(0, "red"), (THRESHOLDS.hdfs_free_ratio, "green")],
            ),
            Stat(
                "Missing blocks",
                "Blocks with no live replica (data loss unless a DataNode comes back).",
                Query("max(hdfs_namenode_missing_blocks)"),
                thresholds=[(1, "red")],
            ),
            Stat(
                "Under-replicated blocks",
                "Blocks with fewer replicas than their replication factor.",
                Query("max(hdfs_namenode_under_replicated_blocks)"),
                thresholds=[(1, "orange")],
            ),
            Stat(
                "Dead DataNodes",
                "DataNodes the NameNode considers dead.",
                Query("max(hdfs_namenode_dead_datanodes)"),
                thresholds=[(1, "red")],
            ),
        ],
    )


def _hdfs_over_time() -> Row:
    return Row(
        "HDFS over time",
        [
            Graph(
                "Capacity",
                "Used and total HDFS capacity.",
                [
                    Query("max(hdfs_namenode_capacity_used_bytes)", "used"),
                    Query("max(hdfs_namenode_capacity_total_bytes)", "total"),
                ],
                unit="bytes",
                min=0,
            ),
            Graph(
                "Blocks and DataNodes",
                "Missing and under-replicated blocks, and live DataNodes.",
                [
                    Query("max(hdfs_namenode_missing_blocks)", "missing blocks"),
                    Query("max(hdfs_namenode_under_replicated_blocks)", "under-replicated blocks"),
                    Query("max(hdfs_namenode_live_datanodes)", "live DataNodes"),
                ],
                min=0,
            ),
        ],
    )
