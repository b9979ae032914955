"""The ``serving`` setting: TF Serving's model source, pinned versions and labels, size and autoscaling."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from infra.config import checks
from infra.config.fields import Fields, resources
from infra.config.keys import REQUIRED
from infra.config.settings import Autoscaling, ModelSource, Serving
from infra.paths import exporting_tensorflow
from infra.specs.namespaces import SERVING, TRAINING
from workloads.core.storage import S3_CREDENTIAL_ENV

_S3_ONLY = ("s3Endpoint", "s3Region", "credentialsSecret")
_STOCK_TF_SERVING = re.compile(r"^(docker\.io/)?tensorflow/serving:(?P<major>\d+)\.(?P<minor>\d+)[.\w-]*$")
_S3_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$")


def read_serving(top: Fields) -> Serving:
    obj = top.obj("serving", {})
    default = Serving()
    source = _model_source(obj)
    versions = obj.integers("versions", list(default.versions), minimum=1)
    labels = _labels(obj, versions)
    autoscaling = _autoscaling(obj)
    serving = Serving(
        min_replicas=obj.integer("minReplicas", default.min_replicas, minimum=1),
        max_replicas=obj.integer("maxReplicas", default.max_replicas, minimum=1),
        model_source=source,
        versions=versions,
        labels=labels,
        gpu=obj.boolean("gpu", default.gpu),
        image=obj.string("image", default.image, check=checks.pinned_image),
        resources=resources(obj, "resources", default.resources),
        autoscaling=autoscaling,
        client_namespaces=obj.strings(
            "clientNamespaces", list(default.client_namespaces), check=checks.dns_label
        ),
    )
    _check_serving(obj, serving)
    obj.done()
    return serving


def _model_source(obj: Fields) -> ModelSource:
    if not obj.has("modelSource"):
        raise obj.fail(
            "modelSource",
            "missing; say where TF Serving reads models: kind hdfs (base hdfs://...), s3 (base s3://bucket/prefix) "
            "or pvc (claimName)",
        )
    fields = obj.obj("modelSource")
    kind = fields.string("kind", allowed=("hdfs", "s3", "pvc"))
    source = ModelSource(
        kind=kind,
        base=fields.string("base", _default_model_base(kind), check=lambda v: _model_base(kind, v)),
        claim_name=fields.string("claimName", "" if kind != "pvc" else REQUIRED, check=_claim_check(kind)),
        s3_endpoint=fields.string("s3Endpoint", "", check=_s3_endpoint),
        s3_region=fields.string("s3Region", ""),
        credentials_secret=fields.string("credentialsSecret", "", check=_secret_check(kind)),
    )
    if kind == "s3" and not source.credentials_secret:
        raise fields.fail(
            "credentialsSecret",
            f"missing; name a Secret holding {' and '.join(S3_CREDENTIAL_ENV)} in {SERVING} and {TRAINING} "
            "(TF Serving's model mirror and the workflow's steps use it; the stack grants nodes no S3 role)",
        )
    if kind != "s3":
        for name in _S3_ONLY:
            if fields.given(name):
                raise fields.fail(name, "applies to kind 's3' only")
    fields.done()
    return source


def _default_model_base(kind: str) -> Any:
    return {"hdfs": "", "pvc": "/models"}.get(kind, REQUIRED)


def _model_base(kind: str, value: str) -> str | None:
    if kind == "hdfs" and value and not value.startswith("hdfs://"):
        return f"{value!r} must be an hdfs:// URL (or empty for the cluster's HDFS /mlstack/models)"
    if kind == "s3" and not re.match(r"^s3://[a-z0-9.-]+(/.*)?$", value):
        return f"{value!r} must be an s3://bucket/prefix URL"
    if kind == "pvc" and not value.startswith("/"):
        return f"{value!r} must be an absolute path inside the volume mount, e.g. /models"
    return None


def _serving_version_problem(image: str) -> str | None:
    """A stock TF Serving older than the TensorFlow that exports cannot load its SavedModels (new ops)."""
    match = _STOCK_TF_SERVING.match(image)
    if not match:
        return None  # a digest or another build: its version is not in the name
    served, exporting = (int(match["major"]), int(match["minor"])), exporting_tensorflow()
    if served >= exporting:
        return None
    return (
        f"{image} cannot load SavedModels exported by TensorFlow {exporting[0]}.{exporting[1]} (the training "
        f"image's); use tensorflow/serving:{exporting[0]}.{exporting[1]}.0 or newer"
    )


def _s3_endpoint(value: str) -> str | None:
    if not value or _S3_ENDPOINT.match(value):
        return None
    return f"{value!r} must be an http(s)://host[:port] URL (no path), e.g. http://minio.example:9000"


def _secret_check(kind: str) -> Callable[[str], str | None]:
    return lambda value: checks.dns_label(value) if kind == "s3" and value else None


def _claim_check(kind: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if kind == "pvc":
            return checks.dns_label(value)
        return "applies to kind 'pvc' only" if value else None

    return check


def _labels(obj: Fields, versions: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    """Version labels (``stable: 3``); each must point at a pinned version."""
    labels_obj = obj.obj("labels", {})
    labels = tuple(sorted((name, labels_obj.integer(name, minimum=1)) for name in labels_obj.names()))
    labels_obj.done()
    for name, version in labels:
        if version not in versions:
            raise labels_obj.fail(
                name, f"points at version {version}, which is not in serving.versions {list(versions)}"
            )
    return labels


def _autoscaling(obj: Fields) -> Autoscaling:
    fields = obj.obj("autoscaling", {})
    default = Autoscaling()
    autoscaling = Autoscaling(
        mode=fields.string("mode", default.mode, allowed=("cpu", "requests", "latency")),
        target_cpu_percent=fields.integer("targetCpuPercent", default.target_cpu_percent, minimum=1),
        target_requests_per_second=fields.integer(
            "targetRequestsPerSecond", default.target_requests_per_second, minimum=1
        ),
        target_p99_ms=fields.integer("targetP99Ms", default.target_p99_ms, minimum=1),
    )
    fields.done()
    return autoscaling


def _check_serving(obj: Fields, serving: Serving) -> None:
    if problem := _serving_version_problem(serving.image):
        raise obj.fail("image", problem)
    if serving.min_replicas > serving.max_replicas:
        raise obj.fail(
            "minReplicas",
            f"{serving.min_replicas} is above maxReplicas {serving.max_replicas}; "
            "allowed: 1 <= minReplicas <= maxReplicas",
        )
