"""TF Serving's configuration files, generated: model config, batching parameters, monitoring config.

These are the text-format protocol buffers that the TF Serving container reads through
``--model_config_file``, ``--batching_parameters_file`` and ``--monitoring_config_file``. Rendering
needs no TensorFlow, so the Pulumi program imports this module directly. Parsing goes through the
protobuf text-format parser: ``ModelServerConfig`` with the definitions ``tensorflow-serving-api``
ships, and ``BatchingParameters`` / ``MonitoringConfig`` (which it does not ship) with schemas that
declare the same fields and types as TF Serving's ``session_bundle_config.proto`` and
``monitoring_config.proto``, so an unknown or mistyped field is rejected exactly as TF Serving would.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import Literal

METRICS_PATH = "/monitoring/prometheus/metrics"
MODEL_NAME = "fashion_mnist"
# TF Serving's own defaults (--port, --rest_api_port); the development server and the clients use them too.
GRPC_PORT = 8500
REST_PORT = 8501
# A model name is one segment of TF Serving's layout (<base>/<model name>/<version>/) and a label value
# (Prometheus, the cluster's specs): the Kubernetes label-value syntax, which every filesystem, object
# store, URL and TF Serving take as it is. It starts with a letter or digit, so never "." or "..".
# Matched with fullmatch: "^...$" would let a trailing newline through.
MODEL_NAME_RULE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_LABEL = re.compile(r"^[a-z][a-z0-9_-]*$")


class TfsConfigError(ValueError):
    """A TF Serving setting that TF Serving would reject or misread."""


def model_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a model name, or None when it can (a settings check)."""
    if isinstance(name, str) and MODEL_NAME_RULE.fullmatch(name):
        return None
    return (
        "must be one path segment: 1-63 letters, digits, '.', '_' or '-', starting and ending with a "
        f"letter or digit, got {name!r}"
    )


def check_model_name(name: str) -> str:
    """``name`` when it is a safe model name; :class:`TfsConfigError` otherwise."""
    problem = model_name_problem(name)
    if problem:
        raise TfsConfigError(f"model name {problem}")
    return name


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """One model in TF Serving's model config.

    With no ``versions`` TF Serving serves the ``num_latest`` highest versions under ``base_path``;
    with ``versions`` it serves exactly those, and ``labels`` (e.g. ``stable``/``canary``) name them.
    Labels require pinned versions: TF Serving can only label a version it has loaded.
    """

    name: str
    base_path: str
    versions: tuple[int, ...] = ()
    num_latest: int = 1
    labels: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        check_model_name(self.name)
        if not self.base_path:
            raise TfsConfigError(f"model {self.name}: base_path must not be empty")
        if any(v <= 0 for v in self.versions) or len(set(self.versions)) != len(self.versions):
            raise TfsConfigError(
                f"model {self.name}: versions must be distinct positive integers, got {self.versions}"
            )
        if self.num_latest < 1:
            raise TfsConfigError(f"model {self.name}: num_latest must be at least 1, got {self.num_latest}")
        names = [label for label, _ in self.labels]
        if len(set(names)) != len(names):
            raise TfsConfigError(f"model {self.name}: duplicate version label in {names}")
        for label, version in self.labels:
            if not _LABEL.match(label):
                raise TfsConfigError(
                    f"model {self.name}: label {label!r} must be lower-case letters, digits, '_', '-'"
                )
            if version not in self.versions:
                raise TfsConfigError(
                    f"model {self.name}: label {label!r} points at version {version}, which is not served; "
                    f"pin it in versions (served: {list(self.versions) or 'latest only'})"
                )


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's server-side batching knobs (``BatchingParameters`` proto)."""

    max_batch_size: int
    batch_timeout_micros: int
    max_enqueued_batches: int
    num_batch_threads: int
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise TfsConfigError(f"batching {name} must be at least 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise TfsConfigError(
                f"batching batch_timeout_micros must be 0 or more, got {self.batch_timeout_micros}"
            )
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise TfsConfigError(
                f"allowed_batch_sizes {list(sizes)} must increase strictly and end at max_batch_size "
                f"{self.max_batch_size}"
            )


def batching_profile(device: Literal["cpu", "gpu"], cpu_cores: int) -> BatchingParameters:
    """Starting points from TF Serving's batching guide (tensorflow_serving/batching/README.md).

    Both: ``num_batch_threads`` = CPU cores. CPU: moderate batches and a small timeout (1 ms "tends to
    smooth out batch sizes when the request rate is low"), with a queue a few batches deep. GPU: large
    batches, which is where a GPU earns its throughput, and ``max_enqueued_batches`` =
    ``num_batch_threads``, the guide's setting for online serving behind a load balancer (a full
    server rejects fast and the request goes to another replica instead of queueing).
    """
    if cpu_cores < 1:
        raise TfsConfigError(f"cpu_cores must be at least 1, got {cpu_cores}")
    if device == "cpu":
        return BatchingParameters(
            max_batch_size=64,
            batch_timeout_micros=1000,
            max_enqueued_batches=4 * cpu_cores,
            num_batch_threads=cpu_cores,
        )
    if device == "gpu":
        return BatchingParameters(
            max_batch_size=512,
            batch_timeout_micros=2000,
            max_enqueued_batches=cpu_cores,
            num_batch_threads=cpu_cores,
            allowed_batch_sizes=(32, 64, 128, 256, 512),
        )
    raise TfsConfigError(f"device must be 'cpu' or 'gpu', got {device!r}")


def render_model_config(models: Sequence[ServedModel]) -> str:
    """``ModelServerConfig`` text for ``--model_config_file``."""
    if not models:
        raise TfsConfigError("the model config needs at least one model")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise TfsConfigError(f"model names must be unique, got {names}")
    lines = ["model_config_list {"]
    for model in models:
        lines += [
            "  config {",
            f"    name: {_quote(model.name)}",
            f"    base_path: {_quote(model.base_path)}",
            '    model_platform: "tensorflow"',
        ]
        if model.versions:
            pinned = " ".join(f"versions: {v}" for v in model.versions)
            lines.append(f"    model_version_policy {{ specific {{ {pinned} }} }}")
        else:
            lines.append(f"    model_version_policy {{ latest {{ num_versions: {model.num_latest} }} }}")
        lines += [f"    version_labels {{ key: {_quote(label)} value: {v} }}" for label, v in model.labels]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_batching_parameters(params: BatchingParameters) -> str:
    """``BatchingParameters`` text for ``--batching_parameters_file``."""
    lines = [
        f"max_batch_size {{ value: {params.max_batch_size} }}",
        f"batch_timeout_micros {{ value: {params.batch_timeout_micros} }}",
        f"max_enqueued_batches {{ value: {params.max_enqueued_batches} }}",
        f"num_batch_threads {{ value: {params.num_batch_threads} }}",
    ]
    lines += [f"allowed_batch_sizes: {size}" for size in params.allowed_batch_sizes]
    if params.pad_variable_length_inputs:
        lines.append("pad_variable_length_inputs: true")
    return "\n".join(lines) + "\n"


def render_monitoring_config(path: str = METRICS_PATH) -> str:
    """``MonitoringConfig`` text for ``--monitoring_config_file``: Prometheus metrics at ``path``."""
    if not path.startswith("/"):
        raise TfsConfigError(f"metrics path must start with '/', got {path!r}")
    return f"prometheus_config {{\n  enable: true\n  path: {_quote(path)}\n}}\n"


def parse_model_config(text: str) -> list[ServedModel]:
    """Reads a model config file with TF Serving's own ``ModelServerConfig`` definition."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    message = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise TfsConfigError(f"model config does not parse: {error}") from error
    models = []
    for entry in message.model_config_list.config:
        policy = entry.model_version_policy
        which = policy.WhichOneof("policy_choice")
        models.append(
            ServedModel(
                name=entry.name,
                base_path=entry.base_path,
                versions=tuple(policy.specific.versions) if which == "specific" else (),
                num_latest=(policy.latest.num_versions or 1) if which == "latest" else 1,
                labels=tuple(sorted(entry.version_labels.items())),
            )
        )
    return models


def parse_batching_parameters(text: str) -> BatchingParameters:
    """Reads a batching parameters file; fields unknown to TF Serving are rejected."""
    message = _parse_with_schema(text, "BatchingParameters")
    return BatchingParameters(
        max_batch_size=message.max_batch_size.value,
        batch_timeout_micros=message.batch_timeout_micros.value,
        max_enqueued_batches=message.max_enqueued_batches.value,
        num_batch_threads=message.num_batch_threads.value,
        allowed_batch_sizes=tuple(message.allowed_batch_sizes),
        pad_variable_length_inputs=message.pad_variable_length_inputs,
    )


def parse_monitoring_config(text: str) -> str | None:
    """Returns the Prometheus metrics path, or None when Prometheus export is off."""
    message = _parse_with_schema(text, "MonitoringConfig")
    prometheus = message.prometheus_config
    return (prometheus.path or METRICS_PATH) if prometheus.enable else None


def _parse_with_schema(text: str, message_name: str):
    from google.protobuf import text_format

    message = _schemas()[message_name]()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise TfsConfigError(f"{message_name} does not parse: {error}") from error
    return message


@functools.cache
def _schemas() -> dict[str, type]:
    """Message classes for the TF Serving configs that ``tensorflow-serving-api`` does not ship.

    Field names, numbers and types follow TF Serving's .proto files (package tensorflow.serving).
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="mlstack/tfs_config_schemas.proto",
        package="mlstack.tfs",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def add(
        message: descriptor_pb2.DescriptorProto,
        name: str,
        number: int,
        kind: int,
        type_name: str = "",
        *,
        repeated=False,
    ):
        label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
        entry = message.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            entry.type_name = type_name

    batching = proto.message_type.add(name="BatchingParameters")
    for number, name in enumerate(
        ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"), 1
    ):
        add(batching, name, number, field.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add(batching, "thread_pool_name", 5, field.TYPE_MESSAGE, ".google.protobuf.StringValue")
    add(batching, "allowed_batch_sizes", 6, field.TYPE_INT64, repeated=True)
    add(batching, "pad_variable_length_inputs", 7, field.TYPE_BOOL)

    prometheus = proto.message_type.add(name="PrometheusConfig")
    add(prometheus, "enable", 1, field.TYPE_BOOL)
    add(prometheus, "path", 2, field.TYPE_STRING)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    add(monitoring, "prometheus_config", 1, field.TYPE_MESSAGE, ".mlstack.tfs.PrometheusConfig")

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"mlstack.tfs.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")
    }


def _quote(value: str) -> str:
    """A text-format string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
