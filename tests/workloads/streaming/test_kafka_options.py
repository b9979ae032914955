"""The Kafka connection flags both services share (workloads.streaming.kafka.KafkaOptions): the security
flags are checked against each other, the secrets come from files read at start (each problem one line
naming the file and what to mount), and no secret can be passed as an argument. No broker is needed here;
tests/system/test_kafka_security.py runs them against the kafka role's SASL_SSL listener."""

from __future__ import annotations

import pathlib

import pytest

from tests.workloads.support import run_workloads
from tests.workloads.test_storage_errors import error_line
from workloads import cli
from workloads.core import settings as core_settings
from workloads.streaming import kafka

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def config(command: str, *args: str):
    flags = vars(cli.build_parser().parse_args([command, *args]))
    given = {k: v for k, v in flags.items() if k not in {"command", "config", "log_format", "log_level"}}
    if command == "stream-ingest":
        given.setdefault("output", "/tmp/unused")
    return core_settings.resolve(cli.load_command(command).Config, given, {})


def config_error(*args: str) -> str:
    with pytest.raises(core_settings.ConfigError) as raised:
        config("infer-worker", *args)
    return str(raised.value)


@pytest.fixture
def credentials(tmp_path) -> pathlib.Path:
    """A mounted credentials Secret: a file per key (the password with the line break a file often ends with)."""
    directory = tmp_path / "kafka-credentials"
    directory.mkdir()
    (directory / "username").write_text("mlstack-streaming")
    (directory / "password").write_text("s3cret-Pa55\n")
    return directory


@pytest.mark.parametrize("command", ["infer-worker", "stream-ingest"])
def test_both_services_take_the_same_kafka_flags(command):
    fields = {name for name in vars(config(command)) if name.startswith(("kafka_", "bootstrap_"))}
    assert fields == {
        "bootstrap_servers",
        "kafka_security_protocol",
        "kafka_sasl_mechanism",
        "kafka_credentials_dir",
        "kafka_ca_file",
        "kafka_config",
    }


def test_plaintext_is_the_default_and_needs_no_files():
    settings = config("infer-worker").client_settings()
    assert settings["security.protocol"] == "PLAINTEXT"
    assert not {"sasl.username", "sasl.password", "ssl.ca.location"} & set(settings)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_the_credentials_directory(protocol):
    assert config_error("--kafka-security-protocol", protocol) == (
        f"--kafka-credentials-dir: required with --kafka-security-protocol {protocol}: the directory where "
        "the SCRAM user's username and password files are mounted"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kafka-credentials-dir", "/d"],
         "--kafka-credentials-dir: only the SASL_* protocols use credentials, not PLAINTEXT"),
        (["--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-credentials-dir", "/d", "--kafka-ca-file", "/c"],
         "--kafka-ca-file: only SSL and SASL_SSL use a CA, not SASL_PLAINTEXT"),
    ],
    ids=["credentials-without-sasl", "ca-without-tls"],
)  # fmt: skip
def test_security_flags_that_cannot_apply_are_refused(args, message):
    assert config_error(*args) == message


@pytest.mark.parametrize(
    ("flag", "value"), [("--kafka-security-protocol", "SASL"), ("--kafka-sasl-mechanism", "PLAIN")]
)
def test_only_the_roles_protocols_and_scram_mechanisms_are_offered(flag, value, capsys):
    with pytest.raises(SystemExit):
        config("infer-worker", flag, value)
    assert f"argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "flag"),
    [
        ("sasl.password", "--kafka-credentials-dir"),
        ("sasl.username", "--kafka-credentials-dir"),
        ("security.protocol", "--kafka-security-protocol"),
        ("sasl.mechanisms", "--kafka-sasl-mechanism"),
        ("ssl.ca.location", "--kafka-ca-file"),
    ],
)
def test_kafka_config_refuses_the_settings_the_security_flags_own(setting, flag):
    error = config_error("--kafka-config", f"{setting}=value-not-echoed")
    assert error == f"--kafka-config: {setting} is set with {flag}, not here (secrets are read from files)"


def test_sasl_ssl_settings_come_from_the_mounted_files(credentials, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text(PEM)
    options = config(
        "stream-ingest",
        "--kafka-security-protocol", "SASL_SSL",
        "--kafka-sasl-mechanism", "SCRAM-SHA-256",
        "--kafka-credentials-dir", str(credentials),
        "--kafka-ca-file", str(ca),
    )  # fmt: skip
    settings = options.client_settings()
    assert {k: v for k, v in settings.items() if k != "error_cb"} == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "mlstack-streaming",
        "sasl.password": "s3cret-Pa55",
        "ssl.ca.location": str(ca),
    }
    assert "s3cret" not in repr(options.public_dict())


@pytest.mark.parametrize("missing", kafka.CREDENTIAL_FILES)
def test_a_missing_credential_file_is_named_with_what_to_mount(credentials, missing):
    (credentials / missing).unlink()
    options = config(
        "infer-worker",
        "--kafka-security-protocol",
        "SASL_PLAINTEXT",
        "--kafka-credentials-dir",
        str(credentials),
    )
    with pytest.raises(kafka.KafkaSetupError) as raised:
        options.client_settings()
    assert str(raised.value) == (
        f"cannot read the Kafka SASL {missing} from {credentials / missing} (No such file or directory); mount "
        f"the credentials Secret (keys username and password) at {credentials} (--kafka-credentials-dir)"
    )


def test_an_empty_password_file_is_refused(credentials):
    (credentials / "password").write_text("\n")
    with pytest.raises(kafka.KafkaSetupError, match="password must be set"):
        kafka.read_credentials(str(credentials))


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot read the Kafka CA file"), ("not a pem", "holds no PEM")]
)
def test_a_ca_file_that_is_missing_or_not_pem_is_named(tmp_path, content, message):
    ca = tmp_path / "ca.crt"
    if content is not None:
        ca.write_text(content)
    options = config("infer-worker", "--kafka-security-protocol", "SSL", "--kafka-ca-file", str(ca))
    with pytest.raises(kafka.KafkaSetupError, match=message) as raised:
        options.client_settings()
    assert str(ca) in str(raised.value)


def test_a_service_without_its_mounted_secret_stops_with_one_line_naming_the_file(tmp_path):
    result = run_workloads(
        "stream-ingest", "--output", str(tmp_path / "out"), "--metrics-port", "none", "--log-format", "json",
        "--kafka-security-protocol", "SASL_SSL", "--kafka-credentials-dir", str(tmp_path / "not-mounted"),
        timeout=120,
    )  # fmt: skip
    assert error_line(result).startswith(
        f"cannot read the Kafka SASL username from {tmp_path / 'not-mounted' / 'username'} (No such file or "
        "directory); mount the credentials Secret"
    )
