"""Checks of single values: each takes the value and returns what is wrong with it, or None."""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal

from infra.config.settings import K3S_VERSION, SUPPORTED_KUBERNETES_MINORS

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?/,-]+$")
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def cidr(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        return f"{value!r} is not a CIDR block such as 203.0.113.0/24 ({error})"
    return None


def cidr_or_empty(value: str) -> str | None:
    return cidr(value) if value else None


def ip_or_empty(value: str) -> str | None:
    if not value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def dns_label(value: str) -> str | None:
    if not _DNS_LABEL.match(value):
        return f"{value!r} must be a DNS label: lower-case letters, digits and '-', at most 63 characters"
    return None


def absolute_path(value: str) -> str | None:
    return None if value.startswith("/") else f"{value!r} must be an absolute path"


QUANTITY = re.compile(r"(?P<number>\d+(\.\d+)?)(?P<suffix>m|k|Ki|Mi|Gi|Ti|M|G|T)?")
_SUFFIXES = {
    None: 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


def quantity(value: str) -> str | None:
    if QUANTITY.fullmatch(value):
        return None
    return f"{value!r} is not a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi"


def amount(value: str) -> Decimal:
    """The number a valid quantity stands for (CPUs or bytes), for sums and comparisons."""
    match = QUANTITY.fullmatch(value)
    if match is None:
        raise ValueError(quantity(value))
    return Decimal(match["number"]) * _SUFFIXES[match["suffix"]]


def cron_schedule(value: str) -> str | None:
    fields = value.split()
    if value in _CRON_MACROS or (len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)):
        return None
    return (
        f"{value!r} is not a cron schedule: five fields (minute hour day-of-month month day-of-week, "
        f"e.g. '0 3 * * 0') or one of {', '.join(_CRON_MACROS)}"
    )


def duration(value: str) -> str | None:
    if _GO_DURATION.match(value):
        return None
    return f"{value!r} is not a duration such as 720h, 90m or 1h30m"


def k3s_version(value: str) -> str | None:
    match = K3S_VERSION.match(value)
    allowed = ", ".join(SUPPORTED_KUBERNETES_MINORS)
    if not match:
        return f"{value!r} is not a k3s release; use vMAJOR.MINOR.PATCH+k3sN (e.g. v1.33.5+k3s1) of Kubernetes {allowed}"
    minor = f"{match['major']}.{match['minor']}"
    if minor not in SUPPORTED_KUBERNETES_MINORS:
        return f"Kubernetes {minor} ({value}) is not supported; allowed Kubernetes versions: {allowed}"
    return None


def driver_branch(value: str) -> str | None:
    return None if value.isdigit() else f"{value!r} must be a driver branch number such as 580"


def pinned_image(value: str) -> str | None:
    name = value.rsplit("/", 1)[-1]
    if "@sha256:" in value:
        return None
    if ":" not in name:
        return f"{value!r} has no tag; pin a version such as tensorflow/serving:2.21.0"
    if name.endswith(":latest"):
        return f"{value!r}: 'latest' is not allowed; pin a version"
    return None
