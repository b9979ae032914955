"""The kafka role's TLS and SASL/SCRAM settings on a real broker: server.properties and admin.properties as the
role renders them with kafka_tls and kafka_sasl_scram on, keystores made with the JDK's keytool, one KRaft
node of the release `make releases` builds. The controller listener speaks TLS with client certificates
required, the broker listener SASL_SSL; the role's own admin command works through admin.properties, a client
with the right password and the CA produces and consumes, and a wrong password, an untrusted certificate
and a plaintext client are each refused."""

from __future__ import annotations

import pathlib
import secrets
import subprocess
import time

import pytest

from tests.ansible.test_data_tier_templates import SINGLE, java_properties, render
from tests.support.hadoop_release import java_home
from tests.support.kafka_release import QUIET, KafkaNode
from tests.support.releases import KAFKA, required

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("kafka_tls")]
USER = "broker"
MECHANISM = "SCRAM-SHA-512"
# Settings of the role's server.properties that hold addresses, paths or cluster sizes of its own hosts: the
# test node keeps its loopback ones; everything about security comes from the role.
HOST_SPECIFIC = {
    "process.roles",
    "node.id",
    "controller.quorum.voters",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "num.network.threads",
    "num.io.threads",
}


def keytool(*args: str, cwd: pathlib.Path) -> None:
    done = subprocess.run(
        [f"{java_home()}/bin/keytool", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"keytool {args[0]}: {done.stdout}{done.stderr}"


def certificates(directory: pathlib.Path, password: str) -> dict[str, pathlib.Path]:
    """A CA, the node's key pair signed by it for 127.0.0.1 (server and client use: the controller listener
    requires client certificates), a PKCS12 keystore and truststore as the role expects, the CA as PEM."""
    store = ["-storetype", "PKCS12", "-storepass", password]
    key = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", "2"]
    keytool("-genkeypair", "-alias", "ca", *key, "-dname", "CN=mlstack test CA", "-ext", "bc:c",
            "-keystore", "ca-key.p12", *store, cwd=directory)  # fmt: skip
    keytool("-exportcert", "-alias", "ca", "-rfc", "-file", "ca.pem", "-keystore", "ca-key.p12", *store,
            cwd=directory)  # fmt: skip
    keytool("-genkeypair", "-alias", "node", *key, "-dname", "CN=127.0.0.1", "-keystore", "node.p12", *store,
            cwd=directory)  # fmt: skip
    keytool("-certreq", "-alias", "node", "-file", "node.csr", "-keystore", "node.p12", *store, cwd=directory)
    keytool("-gencert", "-alias", "ca", "-infile", "node.csr", "-outfile", "node.pem", "-rfc",
            "-ext", "san=ip:127.0.0.1,dns:localhost", "-ext", "eku=serverAuth,clientAuth",
            "-keystore", "ca-key.p12", *store, cwd=directory)  # fmt: skip
    keytool("-importcert", "-alias", "ca", "-file", "ca.pem", "-noprompt", "-keystore", "node.p12", *store,
            cwd=directory)  # fmt: skip
    keytool(
        "-importcert", "-alias", "node", "-file", "node.pem", "-keystore", "node.p12", *store, cwd=directory
    )
    keytool("-importcert", "-alias", "ca", "-file", "ca.pem", "-noprompt", "-keystore", "trust.p12", *store,
            cwd=directory)  # fmt: skip
    return {
        name: directory / f"{name}.{ext}" for name, ext in (("node", "p12"), ("trust", "p12"), ("ca", "pem"))
    }


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """(node, the role's admin.properties, the SCRAM password, the CA's PEM) for a running TLS+SCRAM node."""
    home = required(KAFKA, tmp_path_factory.mktemp("kafka-release"))
    tls = tmp_path_factory.mktemp("tls")
    password, store_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    files = certificates(tls, store_password)
    variables = {
        "kafka_tls": True,
        "kafka_tls_keystore_path": str(files["node"]),
        "kafka_tls_keystore_password": store_password,
        "kafka_tls_truststore_path": str(files["trust"]),
        "kafka_tls_truststore_password": store_password,
        "kafka_sasl_scram": True,
        "kafka_sasl_users": [{"name": USER, "password": password}],
    }
    (host,) = SINGLE
    rendered = render(tmp_path_factory.mktemp("render"), SINGLE, variables, ["kafka"])[host]
    role = java_properties(rendered["kafka/server.properties"])
    admin_config = tls / "admin.properties"
    admin_config.write_text(rendered["kafka/admin.properties"])
    node = KafkaNode(home, tmp_path_factory.mktemp("kafka-node"))
    node.settings |= {key: value for key, value in role.items() if key not in HOST_SPECIFIC}
    node.settings |= {
        "listeners": f"BROKER://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"BROKER://127.0.0.1:{node.port}",
    }
    node.format_args = ["--add-scram", f"{MECHANISM}=[name={USER},password={password}]"]
    node.client_config = client(password, files["ca"])
    try:
        node.start()
        yield node, admin_config, password, files["ca"]
    finally:
        node.stop()


def client(password: str, ca: pathlib.Path | None) -> dict[str, str]:
    config = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": USER,
        "sasl.password": password,
    }
    return config | ({"ssl.ca.location": str(ca)} if ca else {})


def first_error(config: dict[str, str], bootstrap: str, timeout_s: float = 30):
    """The first error a producer with ``config`` reports on ``bootstrap`` (None if it connects)."""
    from confluent_kafka import Producer

    errors = []
    producer = Producer({"bootstrap.servers": bootstrap, **QUIET, **config, "error_cb": errors.append})
    deadline = time.monotonic() + timeout_s
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
        try:
            producer.list_topics(timeout=1)
            return None
        except Exception:  # the error itself comes through error_cb
            continue
    return errors[0] if errors else None


def test_the_roles_admin_command_works_over_sasl_ssl_with_its_admin_properties(secured):
    node, admin_config, _, _ = secured
    command = [str(node.home / "bin" / "kafka-topics.sh"), "--bootstrap-server", node.bootstrap]
    command += ["--command-config", str(admin_config), "--create", "--topic", "tls.check"]
    created = subprocess.run(
        [*command, "--partitions", "1", "--replication-factor", "1"],
        capture_output=True,
        text=True,
        env={"KAFKA_HEAP_OPTS": "-Xmx128m", "JAVA_HOME": java_home(), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stdout + created.stderr


def test_a_scram_user_with_the_ca_produces_and_consumes(secured):
    from confluent_kafka import Consumer, Producer

    node, _, password, ca = secured
    node.create_topics(["tls.records"], partitions=1)
    producer = Producer({"bootstrap.servers": node.bootstrap, **QUIET, **client(password, ca), "acks": "all"})
    producer.produce("tls.records", b"over TLS")
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": node.bootstrap, **QUIET, **client(password, ca), "group.id": "tls-check",
         "auto.offset.reset": "earliest"}
    )  # fmt: skip
    consumer.subscribe(["tls.records"])
    try:
        messages = []
        deadline = time.monotonic() + 60
        while not messages and time.monotonic() < deadline:
            messages = [m for m in consumer.consume(1, timeout=1) if m.error() is None]
        assert [m.value() for m in messages] == [b"over TLS"]
    finally:
        consumer.close()


def test_a_wrong_password_is_refused(secured):
    from confluent_kafka import KafkaError

    node, _, password, ca = secured
    error = first_error(client(password + "-wrong", ca), node.bootstrap)
    assert error is not None and error.code() == KafkaError._AUTHENTICATION, error
    assert "Authentication failed" in error.str()


def test_a_client_that_does_not_trust_the_ca_fails_the_handshake(secured):
    from confluent_kafka import KafkaError

    node, _, password, _ = secured
    error = first_error(client(password, None), node.bootstrap)  # the system's CAs only
    assert error is not None and error.code() == KafkaError._SSL, error
    assert "certificate verify failed" in error.str()


def test_a_plaintext_client_gets_nothing_from_the_tls_listener(secured):
    node, _, _, _ = secured
    assert first_error({"security.protocol": "PLAINTEXT"}, node.bootstrap, timeout_s=10) is not None
