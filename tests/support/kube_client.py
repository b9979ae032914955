"""The few API calls the API server tests make, over plain HTTPS: server-side apply, create, delete,
access reviews. Each write returns the server's verdict with its warnings (the ``Warning`` headers that
kubectl prints), which the Kubernetes Python client drops."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from typing import Any

import requests

FIELD_MANAGER = "mlstack-tests"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the server answered to one write: the HTTP status, its message when refused, its warnings."""

    status: int
    message: str
    warnings: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return self.status < 300

    def __str__(self) -> str:
        text = "accepted" if self.accepted else f"refused ({self.status}): {self.message}"
        return text + "".join(f"\n    warning: {warning}" for warning in self.warnings)


@dataclasses.dataclass(frozen=True)
class Resource:
    """Where a kind is served: its REST collection, and whether it lives in a namespace."""

    group_version: str
    plural: str
    namespaced: bool

    def collection(self, namespace: str | None) -> str:
        base = (
            f"/api/{self.group_version}" if "/" not in self.group_version else f"/apis/{self.group_version}"
        )
        return f"{base}/namespaces/{namespace}/{self.plural}" if self.namespaced else f"{base}/{self.plural}"


def describe(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta.get('name') or meta.get('generateName', '')}"


def _warning_text(value: str) -> str:
    """The text of one `Warning: 299 - "text"` header (RFC 7234: a quoted string, `\\"` inside)."""
    if not value.startswith('299 - "'):
        return value
    return re.sub(r"\\(.)", r"\1", value.removeprefix("299 - ")[1:-1])


def _warnings(response: requests.Response) -> tuple[str, ...]:
    # Each warning is its own header; requests would join them with commas.
    values = response.raw.headers.getlist("Warning") if response.raw is not None else []
    return tuple(_warning_text(value) for value in values)


def _verdict(response: requests.Response) -> Verdict:
    message = ""
    if response.status_code >= 300:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
    return Verdict(response.status_code, message, _warnings(response))


class Client:
    """A session against one API server (as its admin unless ``impersonate`` names someone else)."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url
        self.session = session

    @functools.cache  # noqa: B019 - one client per session; discovery does not change under it
    def _served(self, group_version: str) -> dict[str, Resource]:
        path = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        response = self.session.get(self.url + path, timeout=30)
        if response.status_code == 404:
            return {}
        response.raise_for_status()
        return {
            item["kind"]: Resource(group_version, item["name"], item["namespaced"])
            for item in response.json()["resources"]
            if "/" not in item["name"]
        }

    def resource(self, obj: dict[str, Any]) -> Resource | None:
        """Where the server serves ``obj``'s kind; None when it serves no such kind (no CRD)."""
        return self._served(obj["apiVersion"]).get(obj["kind"])

    def forget_discovery(self) -> None:
        """Reads discovery afresh (after installing CRDs)."""
        self._served.cache_clear()

    def _path(self, obj: dict[str, Any], named: bool) -> str:
        resource = self.resource(obj)
        if resource is None:
            raise LookupError(f"the server serves no {obj['kind']} in {obj['apiVersion']}")
        path = self.url + resource.collection(obj["metadata"].get("namespace"))
        return f"{path}/{obj['metadata']['name']}" if named else path

    def apply(self, obj: dict[str, Any]) -> Verdict:
        """Server-side apply, as `kubectl apply --server-side --force-conflicts` and Pulumi's SSA mode do."""
        response = self.session.patch(
            self._path(obj, named=True),
            params={"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"},
            data=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
            timeout=60,
        )
        return _verdict(response)

    def create(self, obj: dict[str, Any], dry_run: bool = False) -> Verdict:
        params = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict"}
        if dry_run:
            params["dryRun"] = "All"
        response = self.session.post(self._path(obj, named=False), params=params, json=obj, timeout=60)
        return _verdict(response)

    def get(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The object as the server holds it; None when there is none."""
        response = self.session.get(self._path(obj, named=True), timeout=30)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def delete(self, obj: dict[str, Any]) -> Verdict:
        return _verdict(self.session.delete(self._path(obj, named=True), timeout=60))

    def post(self, path: str, body: dict[str, Any], impersonate: str | None = None) -> dict[str, Any]:
        """POSTs a review and returns the server's answer; ``impersonate`` acts as that user, with the
        groups the authenticator would give a service account."""
        headers = {}
        if impersonate:
            headers["Impersonate-User"] = impersonate
        response = self.session.post(self.url + path, json=body, headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()
