"""What the Kafka services (``infer-worker``, ``stream-ingest``) share: the connection flags and the client
settings built from them, consumer lag and the metrics endpoint. confluent-kafka and prometheus-client are
imported here only.

Security: the flags say how to reach the brokers' listener (the kafka role's ``kafka_tls`` and
``kafka_sasl_scram``) and name *files* for the secrets: the SCRAM user's ``username`` and ``password`` in
``--kafka-credentials-dir`` (a mounted Secret), the CA in ``--kafka-ca-file``. They are read once at start, so
no password is ever in a pod's args, its environment or a log line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from workloads.core.errors import WorkloadError
from workloads.core.fsutil import atomic_write_text
from workloads.core.settings import CommandConfig, ConfigError, non_empty, option

log = logging.getLogger(__name__)

# The topics and consumer groups of the streaming services (docs/interfaces.md, "Names"): the services'
# defaults, the Pulumi program's container args and the Ansible role's topic list all use these.
REQUESTS_TOPIC = "mlstack.inference.requests"
RESULTS_TOPIC = "mlstack.inference.results"
DLQ_TOPIC = "mlstack.inference.dlq"
INGEST_TOPIC = "mlstack.ingest.images"
INFER_WORKER_GROUP = "mlstack-infer-worker"
STREAM_INGEST_GROUP = "mlstack-stream-ingest"

# What the kafka role's broker listener speaks: PLAINTEXT, SSL (kafka_tls), SASL_PLAINTEXT (kafka_sasl_scram)
# or SASL_SSL (both); and its SCRAM mechanisms (kafka_sasl_scram_mechanism, the first is its default).
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
# The files of --kafka-credentials-dir, which are the keys of the credentials Secret mounted there.
CREDENTIAL_FILES = ("username", "password")
# The key of the CA ConfigMap the stack mounts: the file --kafka-ca-file names in the pods.
CA_KEY = "ca.crt"
# librdkafka settings the security flags own: refused in --kafka-config, where a password would sit in the
# process's arguments (a pod's args are readable by anyone who can read the Deployment).
_OWNED_SETTINGS = {
    "security.protocol": "--kafka-security-protocol",
    "sasl.mechanism": "--kafka-sasl-mechanism",
    "sasl.mechanisms": "--kafka-sasl-mechanism",
    "sasl.username": "--kafka-credentials-dir",
    "sasl.password": "--kafka-credentials-dir",
    "ssl.ca.location": "--kafka-ca-file",
}


class KafkaSetupError(WorkloadError):
    """The Kafka client cannot start: a credential or CA file is missing, or the brokers refuse them."""


def uses_sasl(protocol: str) -> bool:
    return protocol.startswith("SASL_")


def uses_tls(protocol: str) -> bool:
    return protocol.endswith("SSL")


def check_kafka_settings(items: tuple[str, ...]) -> str | None:
    for item in items:
        key, sep, _ = item.partition("=")
        key = key.strip()
        if not sep or not key:
            return f"each Kafka setting is KEY=VALUE (librdkafka names, e.g. linger.ms=5), got {item!r}"
        if key in _OWNED_SETTINGS:
            return f"{key} is set with {_OWNED_SETTINGS[key]}, not here (secrets are read from files)"
    return None


def settings_option() -> Any:
    """The ``--kafka-config KEY=VALUE`` flag of both services (librdkafka settings, masked in logs)."""
    return option(
        (),
        help="extra librdkafka settings KEY=VALUE (not the security ones: see the --kafka-* flags)",
        check=check_kafka_settings,
        secret=True,
    )


def kafka_settings(items: Sequence[str]) -> dict[str, str]:
    return {key.strip(): value for key, _, value in (item.partition("=") for item in items)}


@dataclasses.dataclass(frozen=True)
class KafkaOptions(CommandConfig):
    """The connection flags of both services: where the brokers are and how their listener is secured."""

    bootstrap_servers: str = option(
        "localhost:9092", help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]", check=non_empty
    )
    kafka_security_protocol: str = option(
        SECURITY_PROTOCOLS[0],
        help="what the brokers' listener speaks (the kafka role's: SSL with kafka_tls, SASL_* with "
        "kafka_sasl_scram)",
        choices=SECURITY_PROTOCOLS,
    )
    kafka_sasl_mechanism: str = option(
        SASL_MECHANISMS[0], help="SCRAM mechanism of the SASL_* protocols", choices=SASL_MECHANISMS
    )
    kafka_credentials_dir: str | None = option(
        None,
        help="directory with the SCRAM user's files `username` and `password` (a mounted Secret), read at "
        "start; needed by the SASL_* protocols",
        metavar="DIR",
    )
    kafka_ca_file: str | None = option(
        None,
        help="PEM file of the CA that signed the brokers' certificates (default: the system's CAs); "
        "SSL and SASL_SSL only",
        metavar="FILE",
    )
    kafka_config: tuple[str, ...] = settings_option()

    def validate(self) -> None:
        protocol = self.kafka_security_protocol
        if uses_sasl(protocol) and not self.kafka_credentials_dir:
            raise ConfigError(
                "--kafka-credentials-dir",
                f"required with --kafka-security-protocol {protocol}: the directory where the SCRAM user's "
                f"{' and '.join(CREDENTIAL_FILES)} files are mounted",
            )
        if self.kafka_credentials_dir and not uses_sasl(protocol):
            raise ConfigError(
                "--kafka-credentials-dir", f"only the SASL_* protocols use credentials, not {protocol}"
            )
        if self.kafka_ca_file and not uses_tls(protocol):
            raise ConfigError("--kafka-ca-file", f"only SSL and SASL_SSL use a CA, not {protocol}")

    def client_settings(self) -> dict[str, Any]:
        """The librdkafka settings every client of the service shares: security (its files read now, so a
        missing mount is one error line at start) and --kafka-config; the brokers refusing the credentials
        or the certificate is raised from the client's next poll as :class:`KafkaSetupError`."""
        protocol = self.kafka_security_protocol
        settings: dict[str, Any] = {"security.protocol": protocol}
        user = None
        if uses_sasl(protocol):
            user, password = read_credentials(self.kafka_credentials_dir)
            settings |= {
                "sasl.mechanism": self.kafka_sasl_mechanism,
                "sasl.username": user,
                "sasl.password": password,
            }
        if self.kafka_ca_file:
            settings["ssl.ca.location"] = _readable_ca(self.kafka_ca_file)
        settings["error_cb"] = _refusals(user, self.kafka_credentials_dir, self.kafka_ca_file)
        return settings | kafka_settings(self.kafka_config)

    def consumer(self, group_id: str) -> Any:
        return _client(
            "Consumer", consumer_settings(self.bootstrap_servers, group_id, self.client_settings())
        )

    def producer(self) -> Any:
        return _client("Producer", producer_settings(self.bootstrap_servers, self.client_settings()))


def read_credentials(directory: str | None) -> tuple[str, str]:
    """The SCRAM user's name and password from the Secret's files (a trailing line break dropped)."""
    values = []
    for name in CREDENTIAL_FILES:
        path = pathlib.Path(directory or "", name)
        try:
            value = path.read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise KafkaSetupError(
                f"cannot read the Kafka SASL {name} from {path} ({reason}); mount the credentials Secret "
                f"(keys {' and '.join(CREDENTIAL_FILES)}) at {directory} (--kafka-credentials-dir)"
            ) from None
        if not value:
            raise KafkaSetupError(f"{path} is empty; the credentials Secret's {name} must be set")
        values.append(value)
    return values[0], values[1]


def _readable_ca(path: str) -> str:
    """``path``, once it is known to hold a PEM certificate (librdkafka's own error is a stack trace)."""
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except OSError as error:
        raise KafkaSetupError(
            f"cannot read the Kafka CA file {path} ({error.strerror or error}); mount the CA ConfigMap "
            f"(key {CA_KEY}) there, or point --kafka-ca-file at the PEM of the CA that signed the brokers"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise KafkaSetupError(
            f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); --kafka-ca-file must name the PEM "
            f"of the CA that signed the brokers' certificates (the CA ConfigMap's {CA_KEY})"
        )
    return path


def _refusals(user: str | None, credentials_dir: str | None, ca_file: str | None) -> Callable[[Any], None]:
    """librdkafka's error callback: a refused login or an untrusted certificate cannot heal by retrying
    (librdkafka would retry forever), so it ends the service with the reason; other errors are logged."""

    def on_error(error: Any) -> None:
        from confluent_kafka import KafkaError

        if error.code() == KafkaError._AUTHENTICATION:
            raise KafkaSetupError(
                f"Kafka refused the SASL login of user {user!r} from {credentials_dir}: {error.str()}; check "
                "the credentials Secret against the brokers' SCRAM user and --kafka-sasl-mechanism"
            )
        if error.code() == KafkaError._SSL and "certificate verify failed" in error.str():
            raise KafkaSetupError(
                f"the Kafka brokers' certificate is not trusted: {error.str()}; --kafka-ca-file "
                f"({ca_file or 'not given: the system CAs'}) must hold the CA that signed it"
            )
        log.warning("Kafka: %s", error.str())

    return on_error


def _client(kind: str, settings: dict[str, Any]) -> Any:
    """A confluent-kafka Consumer or Producer; a setting librdkafka refuses is one error line."""
    import confluent_kafka

    try:
        return getattr(confluent_kafka, kind)(settings)
    except confluent_kafka.KafkaException as error:
        raise KafkaSetupError(f"Kafka {kind.lower()} settings refused: {error.args[0].str()}") from None


def consumer_settings(bootstrap: str, group_id: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Offsets are committed by the service, after its output is durable; nothing automatic."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        **extra,
    }


def producer_settings(bootstrap: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Idempotent (acks=all, no duplicates from the producer's own retries)."""
    return {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, **extra}


def consumer_lag(consumer, timeout_s: float = 2.0) -> dict[int, int]:
    """Messages behind the high watermark, per assigned partition (from the consumer's position)."""
    assignment = consumer.assignment()
    if not assignment:
        return {}
    positions = consumer.position(assignment)
    unknown = [p for p in positions if p.offset < 0]  # nothing fetched yet: start from the commit
    committed = (
        {p.partition: p.offset for p in consumer.committed(unknown, timeout=timeout_s)} if unknown else {}
    )
    lags = {}
    for position in positions:
        low, high = consumer.get_watermark_offsets(position, timeout=timeout_s, cached=False)
        offset = position.offset if position.offset >= 0 else committed.get(position.partition, -1)
        lags[position.partition] = max(high - (offset if offset >= 0 else low), 0)
    return lags


class LagReporter:
    """Keeps a ``{partition}`` lag gauge current, at most every ``interval_s``; never raises."""

    def __init__(self, gauge, interval_s: float = 5.0) -> None:
        self.gauge = gauge
        self.interval_s = interval_s
        self._checked = 0.0

    def update(self, consumer) -> None:
        now = time.monotonic()
        if now - self._checked < self.interval_s:
            return
        try:
            lags = consumer_lag(consumer)
        except Exception as error:  # metrics must never stop the service
            log.debug("consumer lag unavailable: %s", error)
            return
        if lags:  # none while the group is still assigning partitions: try again next time
            self._checked = now
        for partition, lag in lags.items():
            self.gauge.labels(str(partition)).set(lag)

    def assigned(self) -> None:
        self._checked = 0.0  # measure the new assignment at the next update

    def revoked(self, partitions: Sequence[Any]) -> None:
        self._checked = 0.0
        for partition in partitions:
            with contextlib.suppress(KeyError):  # never had a sample
                self.gauge.remove(str(partition.partition))


def start_metrics_server(registry, host: str, port: int | None) -> int | None:
    """Serves ``registry`` at http://host:port/metrics; returns the bound port (0 picks a free one)."""
    if port is None:
        return None
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server.server_port


def write_ready_file(path: str | None, **fields: Any) -> None:
    if path:
        atomic_write_text(path, json.dumps(fields))
