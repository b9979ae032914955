"""The ``streaming`` setting: the Kafka-side services (inference workers, streaming ingestion), and how they
reach the brokers' listener (``streaming.kafka``: what the kafka role secures it with)."""

from __future__ import annotations

from infra.config import checks
from infra.config.fields import Fields, resources
from infra.config.settings import KafkaClient, Streaming
from infra.specs.namespaces import DATA
from workloads.streaming.kafka import (
    CA_KEY,
    CREDENTIAL_FILES,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    uses_sasl,
    uses_tls,
)

# Keys that borrowed TF Serving's batching names for the inference worker's micro-batch.
RENAMED = {"maxBatchSize": "microBatchSize", "maxBatchWaitMs": "microBatchWaitMs"}


def read_streaming(top: Fields) -> Streaming:
    obj = top.obj("streaming", {})
    obj.refuse_renamed(RENAMED, "the inference worker's Kafka micro-batch, not TF Serving's batching")
    default = Streaming()
    streaming = Streaming(
        enabled=obj.boolean("enabled", default.enabled),
        infer_replicas=obj.integer("inferReplicas", default.infer_replicas, minimum=1),
        ingest_replicas=_one_ingester(obj),
        micro_batch_size=obj.integer("microBatchSize", default.micro_batch_size, minimum=1),
        # The worker refuses a wait of 0 (--max-batch-wait-ms must be greater than 0).
        micro_batch_wait_ms=obj.integer("microBatchWaitMs", default.micro_batch_wait_ms, minimum=1),
        shard_size=obj.integer("shardSize", default.shard_size, minimum=1),
        ingest_output=obj.string("ingestOutput", default.ingest_output, check=_ingest_output),
        resources=resources(obj, "resources", default.resources),
        kafka=_kafka_client(obj),
    )
    obj.done()
    return streaming


def _kafka_client(obj: Fields) -> KafkaClient:
    """The listener's protocol and what it needs: a Secret for SASL, a CA for TLS; nothing unused."""
    default = KafkaClient()
    if not obj.has("kafka"):
        obj.skip("kafka")
        return default
    fields = obj.obj("kafka")
    protocol = fields.string("securityProtocol", default.security_protocol, allowed=SECURITY_PROTOCOLS)
    client = KafkaClient(
        security_protocol=protocol,
        sasl_mechanism=fields.string("saslMechanism", default.sasl_mechanism, allowed=SASL_MECHANISMS),
        credentials_secret=fields.string("credentialsSecret", "", check=_name),
        ca_config_map=fields.string("caConfigMap", "", check=_name),
    )
    if uses_sasl(protocol) and not client.credentials_secret:
        raise fields.fail(
            "credentialsSecret",
            f"missing; securityProtocol {protocol} needs a Secret in {DATA} with the keys "
            f"{' and '.join(CREDENTIAL_FILES)} of a SCRAM user the brokers know (the kafka role's "
            "kafka_sasl_users); name it here",
        )
    if uses_tls(protocol) and not client.ca_config_map:
        raise fields.fail(
            "caConfigMap",
            f"missing; securityProtocol {protocol} needs a ConfigMap in {DATA} whose key {CA_KEY} is the PEM "
            "of the CA that signed the brokers' certificates (kept in the kafka role's "
            "kafka_tls_truststore_path); name it here",
        )
    for name, used in (
        ("saslMechanism", uses_sasl(protocol)),
        ("credentialsSecret", uses_sasl(protocol)),
        ("caConfigMap", uses_tls(protocol)),
    ):
        if fields.given(name) and not used:
            raise fields.fail(
                name, f"not used with securityProtocol {protocol}; remove it or change the protocol"
            )
    fields.done()
    return client


def _name(value: str) -> str | None:
    return checks.dns_label(value) if value else None


def _ingest_output(value: str) -> str | None:
    """Where the streaming pods can write: the cluster's HDFS, over RPC or WebHDFS (they mount no volume
    and hold no object-store credentials)."""
    if not value or value.startswith(("hdfs://", "webhdfs://")):
        return None
    return (
        f"{value!r} cannot be written from the streaming pods (no volume is mounted there and no object-store "
        "credentials are wired); use an hdfs:// or webhdfs:// URL, or leave it empty for the cluster's HDFS"
    )


def _one_ingester(obj: Fields) -> int:
    """stream-ingest's manifest is its commit log: a second writer of the same output would overwrite it."""
    replicas = obj.integer("ingestReplicas", Streaming().ingest_replicas, minimum=1)
    if replicas != 1:
        raise obj.fail(
            "ingestReplicas",
            f"{replicas} ingesters would write one output, whose manifest each rewrites (records lost or "
            "duplicated); use 1: one ingester reads every partition of the topic",
        )
    return replicas
