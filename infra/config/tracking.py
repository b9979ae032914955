"""The ``tracking`` setting: the MLflow tracking server in the cluster, on by default, and its size."""

from __future__ import annotations

from infra.config import checks
from infra.config.fields import Fields, resources
from infra.config.settings import Tracking


def read_tracking(top: Fields) -> Tracking:
    obj = top.obj("tracking", {})
    default = Tracking()
    tracking = Tracking(
        enabled=obj.boolean("enabled", default.enabled),
        server_resources=resources(obj, "serverResources", default.server_resources),
        database_resources=resources(obj, "databaseResources", default.database_resources),
        database_storage=obj.string("databaseStorage", default.database_storage, check=_size),
        artifact_storage=obj.string("artifactStorage", default.artifact_storage, check=_size),
        storage_class=obj.string("storageClass", default.storage_class, check=_storage_class),
    )
    obj.done()
    return tracking


def _size(value: str) -> str | None:
    if problem := checks.quantity(value):
        return problem
    return None if checks.amount(value) > 0 else f"{value!r} must be larger than 0"


def _storage_class(value: str) -> str | None:
    return checks.dns_label(value) if value else None
