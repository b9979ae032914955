"""The streaming services as the Pulumi program declares them, against the listener the kafka role secures:
a real KRaft node with the role's own server.properties for ``kafka_tls`` and ``kafka_sasl_scram``
(tests/ansible/test_kafka_tls.py: keytool CA, PKCS12 stores, SASL_SSL broker listener), and the services'
containers rendered from a stack whose ``streaming.kafka`` says SASL_SSL, run with exactly their args, their
Secret and ConfigMap as the files the kubelet would mount (tests/support/pod_rehearsal.py).

What differs from a pod, and nothing else: the mount paths are directories here; the bootstrap address is the
test node's (the cluster name ``kafka-bootstrap.mlstack-data...`` resolves only in the cluster; its port is
held to the role's listener by tests/infra/test_workload_specs.py); the ingest output is on the pod's /tmp
(no HDFS here); the metrics port is any free one.

It proves the parts agree: the protocol and SCRAM mechanism the stack declares are the ones the role's
listener speaks; infer-worker's clients, built from its rendered args, produce over SASL_SSL with a SCRAM
user added to the running cluster (as an operator adds one); stream-ingest, run as rendered, consumes those
records over SASL_SSL and commits them to shards; and a wrong password in the Secret, or a CA ConfigMap that
did not sign the brokers' certificates, ends the service with one error line naming what to check, instead of
librdkafka retrying forever.
"""

from __future__ import annotations

import json
import pathlib
import secrets

import pytest

from infra.config.fields import Fields
from infra.config.streaming import read_streaming
from infra.specs import streaming as streaming_specs
from tests.ansible.test_kafka_tls import secured  # noqa: F401  (the fixture: a node with the role's TLS+SCRAM)
from tests.support.pod_rehearsal import LocalPod
from tests.system.rig import IMAGES
from tests.workloads.serving.processes import wait_until
from workloads import cli
from workloads.core import settings as core_settings
from workloads.data.shards import MANIFEST_NAME, ShardSet
from workloads.serving import payloads
from workloads.streaming import kafka
from workloads.streaming.ingest_messages import record_message

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("kafka_tls")]
USER = "mlstack-streaming"
SECRET = "kafka-streaming-user"
CA_CONFIG_MAP = "kafka-ca"
RECORDS = 16
OUTPUT = "/tmp/shards/train/"  # on the pod's /tmp: there is no HDFS here


def stack_streaming():
    """The ``streaming`` section of a stack file for a listener with kafka_tls and kafka_sasl_scram on, read
    by the program's own reader (small shards so that the test's records commit one)."""
    section = {
        "shardSize": RECORDS // 2,
        "kafka": {"securityProtocol": "SASL_SSL", "credentialsSecret": SECRET, "caConfigMap": CA_CONFIG_MAP},
    }
    return read_streaming(Fields({"streaming": section}, "mlstack:"))


def on_this_machine(name: str, objects: list[dict], node) -> tuple[dict, list[dict]]:
    """The named Deployment's container, its args changed only where this machine differs from the cluster
    (the module docstring), and its pod's volumes."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    replacements = {"--bootstrap-servers": node.bootstrap, "--metrics-port": "0"}
    if name == streaming_specs.STREAM_INGEST:
        replacements["--output"] = OUTPUT
    args = list(container["args"])
    for flag, value in replacements.items():
        assert args.count(flag) == 1, f"{name} renders {flag} {args.count(flag)} times: {args}"
        args[args.index(flag) + 1] = value
    return {**container, "args": args}, pod["volumes"]


def rendered_pod(tmp: pathlib.Path, volumes: list[dict], password: str, ca_pem: str) -> LocalPod:
    """The pod's mounts as directories under ``tmp``, its Secret holding ``password``, its ConfigMap ``ca_pem``."""
    return LocalPod(
        {
            "/tmp": tmp / "pod-tmp",
            streaming_specs.KAFKA_CREDENTIALS_DIR: tmp / "kafka-credentials",
            streaming_specs.KAFKA_CA_DIR: tmp / "kafka-ca",
        },
        secrets={SECRET: {"username": USER, "password": password}},
        config_maps={CA_CONFIG_MAP: {kafka.CA_KEY: ca_pem}},
        pod_volumes=volumes,
    )


def add_scram_user(node, password: str) -> None:
    """The services' own SCRAM user, added to the running cluster through the brokers' admin user."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    mechanism = ScramMechanism[stack_streaming().kafka.sasl_mechanism.replace("-", "_")]
    upsert = UserScramCredentialUpsertion(USER, ScramCredentialInfo(mechanism, 8192), password.encode())
    for future in node.admin.alter_user_scram_credentials([upsert]).values():
        future.result(30)


def ingest_records() -> list[tuple[bytes, bytes]]:
    images = payloads.synthetic_images(RECORDS, seed=3)
    return [(str(i).encode(), record_message(i % 10, pixels=image)) for i, image in enumerate(images)]


@pytest.fixture(scope="module")
def services_user(secured):  # noqa: F811  (the imported fixture)
    """(node, the services' SCRAM password, the CA's PEM) with the production topic names created."""
    node, _, _, ca = secured
    password = secrets.token_urlsafe(16)
    add_scram_user(node, password)
    node.create_topics([kafka.INGEST_TOPIC], partitions=2)
    return node, password, ca


def test_the_stack_declares_the_protocol_and_mechanism_the_roles_listener_speaks(secured):  # noqa: F811
    node, _, _, _ = secured
    declared = stack_streaming().kafka
    protocols = dict(item.split(":") for item in node.settings["listener.security.protocol.map"].split(","))
    assert declared.security_protocol == protocols[node.settings["inter.broker.listener.name"]]
    assert declared.sasl_mechanism == node.settings["sasl.enabled.mechanisms"]


def test_infer_worker_produces_and_stream_ingest_consumes_over_sasl_ssl_as_rendered(services_user, tmp_path):
    node, password, ca = services_user
    objects = streaming_specs.objects(stack_streaming(), IMAGES, "10.0.0.0/16")
    # infer-worker's clients, built by its command from its rendered args, produce the records.
    worker, worker_volumes = on_this_machine(streaming_specs.INFER_WORKER, objects, node)
    worker_pod = rendered_pod(tmp_path / "infer-worker", worker_volumes, password, ca.read_text())
    worker_pod.mount(worker)
    config = command_config(streaming_specs.INFER_WORKER, [worker_pod.local(a) for a in worker["args"]])
    producer = config.producer()
    for key, value in ingest_records():
        producer.produce(kafka.INGEST_TOPIC, key=key, value=value)
    assert producer.flush(60) == 0
    # stream-ingest, run as rendered, consumes them (into shards on its pod's /tmp).
    ingest, ingest_volumes = on_this_machine(streaming_specs.STREAM_INGEST, objects, node)
    ingest_pod = rendered_pod(tmp_path / "stream-ingest", ingest_volumes, password, ca.read_text())
    output = pathlib.Path(ingest_pod.local(OUTPUT))
    service = ingest_pod.start(ingest, tmp_path)
    try:
        wait_until(lambda: committed(output, service) == RECORDS, 60, f"{RECORDS} records in shards")
    finally:
        assert service.terminate() == 0, service.log()[-3000:]
    _, labels = ShardSet.open(str(output)).read_all()
    assert sorted(labels.tolist()) == sorted(i % 10 for i in range(RECORDS))
    assert password not in service.log()


def refusal(node, tmp_path: pathlib.Path, password: str, ca_pem: str) -> str:
    """stream-ingest as rendered, with this Secret and CA: it must exit 1 by itself (not retry forever) with
    one error line, which is returned; no password is in its output."""
    objects = streaming_specs.objects(stack_streaming(), IMAGES, "10.0.0.0/16")
    ingest, volumes = on_this_machine(streaming_specs.STREAM_INGEST, objects, node)
    service = rendered_pod(tmp_path / "pod", volumes, password, ca_pem).start(ingest, tmp_path)
    try:
        wait_until(lambda: not service.alive(), 60, "stream-ingest to give up")
    finally:
        service.kill()
    log = service.log()
    assert service.process.returncode == 1, log[-3000:]
    assert "Traceback" not in log and password not in log, log[-3000:]
    (error,) = [record for record in json_records(log) if record["level"] == "error"]
    return error["msg"]


def test_a_wrong_password_in_the_secret_ends_the_service_with_one_clear_line(services_user, tmp_path):
    node, password, ca = services_user
    message = refusal(node, tmp_path, password + "-rotated", ca.read_text())
    assert message.startswith(
        f"Kafka refused the SASL login of user {USER!r} from {tmp_path / 'pod' / 'kafka-credentials'}: "
    ), message
    assert password not in message


def test_a_ca_that_did_not_sign_the_brokers_ends_the_service_with_one_clear_line(services_user, tmp_path):
    import certifi

    node, password, _ = services_user
    public_cas = pathlib.Path(certifi.where()).read_text()  # valid PEM, none of them the test CA
    message = refusal(node, tmp_path, password, public_cas)
    assert message.startswith("the Kafka brokers' certificate is not trusted: "), message
    assert f"--kafka-ca-file ({tmp_path / 'pod' / 'kafka-ca' / kafka.CA_KEY})" in message


def command_config(command: str, args: list[str]) -> core_settings.CommandConfig:
    """The command's config as ``python -m workloads <command> <args>`` builds it."""
    flags = vars(cli.build_parser().parse_args([command, *args]))
    given = {k: v for k, v in flags.items() if k not in {"command", "config", "log_format", "log_level"}}
    return core_settings.resolve(cli.load_command(command).Config, given, {})


def committed(output: pathlib.Path, service) -> int:
    assert service.alive(), f"stream-ingest exited {service.process.returncode}:\n{service.log()[-3000:]}"
    manifest = output / MANIFEST_NAME
    return json.loads(manifest.read_text())["records"] if manifest.exists() else 0


def json_records(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]
