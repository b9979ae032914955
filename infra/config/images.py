"""The ``imageRegistry``, ``imageVersion`` and ``imageDigests`` settings: where the project's images come from."""

from __future__ import annotations

import re

from infra.config.fields import Fields
from infra.config.settings import IMAGE_NAMES, Images

_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def read_images(top: Fields) -> Images:
    registry = top.string("imageRegistry", check=_registry)
    version = top.string("imageVersion", check=_version)
    digests: dict[str, str] = {}
    if top.has("imageDigests"):
        obj = top.obj("imageDigests")
        for name in IMAGE_NAMES:
            if obj.has(name):
                digests[name] = obj.string(name, check=_digest)
        obj.done()
    else:
        top.skip("imageDigests")
    return Images(registry=registry, version=version, digests=digests)


def _registry(value: str) -> str | None:
    if _REGISTRY.match(value):
        return None
    return (
        f"{value!r} must be a registry path without scheme or trailing '/', e.g. registry.example.com/mlstack"
    )


def _version(value: str) -> str | None:
    if value == "latest":
        return "'latest' is not allowed; pin a release version such as 0.1.0"
    return None if _IMAGE_TAG.match(value) else f"{value!r} is not a valid image tag"


def _digest(value: str) -> str | None:
    return None if _DIGEST.match(value) else f"{value!r} must look like sha256:<64 hex digits>"
