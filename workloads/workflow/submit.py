"""Create a Workflow in the cluster: through the Argo server's API, or through the Kubernetes API with a
kubeconfig's credentials (what ``argo submit`` and ``kubectl create -f`` do), without either client
installed.

Errors are one :class:`SubmitError` line naming the server or file and what to do.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import yaml

from workloads.core.errors import WorkloadError
from workloads.workflow.argo import API_VERSION

TIMEOUT_S = 30.0


class SubmitError(WorkloadError):
    pass


def to_argo_server(server: str, token: str | None, workflow: dict[str, Any], insecure: bool = False) -> str:
    """POST ``workflow`` to the Argo server at ``server``; returns the created workflow's name."""
    namespace = workflow["metadata"]["namespace"]
    url = f"{server.rstrip('/')}/api/v1/workflows/{namespace}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    context = _unverified() if insecure else ssl.create_default_context()
    body = {"namespace": namespace, "workflow": workflow}
    return _post(url, body, headers, context)["metadata"]["name"]


def with_kubeconfig(path: pathlib.Path, workflow: dict[str, Any], context_name: str | None = None) -> str:
    """Create ``workflow`` through the Kubernetes API of ``path``'s context; returns its name."""
    cluster, user = _kubeconfig_entry(path, context_name)
    group, version = API_VERSION.split("/")
    namespace = workflow["metadata"]["namespace"]
    url = f"{cluster['server'].rstrip('/')}/apis/{group}/{version}/namespaces/{namespace}/workflows"
    headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
    with _tls_context(path, cluster, user) as context:
        return _post(url, workflow, headers, context)["metadata"]["name"]


def _kubeconfig_entry(path: pathlib.Path, context_name: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SubmitError(f"--kubeconfig {path}: cannot read it ({error})") from None
    name = context_name or config.get("current-context")
    context = _named(config, "contexts", name, path)["context"]
    cluster = _named(config, "clusters", context.get("cluster"), path)["cluster"]
    user = _named(config, "users", context.get("user"), path).get("user") or {}
    if "exec" in user or "auth-provider" in user:
        raise SubmitError(
            f"--kubeconfig {path}: user {context.get('user')!r} gets credentials from a plugin, which this "
            "command does not run; use a token or client certificate, or `kubectl create -f` the --output"
        )
    return cluster, user


def _named(config: dict[str, Any], section: str, name: str | None, path: pathlib.Path) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return entry
    raise SubmitError(f"--kubeconfig {path}: no {section[:-1]} named {name!r} in {section}")


@contextlib.contextmanager
def _tls_context(
    path: pathlib.Path, cluster: dict[str, Any], user: dict[str, Any]
) -> Iterator[ssl.SSLContext]:
    if cluster.get("insecure-skip-tls-verify"):
        context = _unverified()  # the kubeconfig asks for it
    else:
        authority = _pem(path, cluster, "certificate-authority")
        context = ssl.create_default_context(cadata=authority) if authority else ssl.create_default_context()
    certificate, key = _pem(path, user, "client-certificate"), _pem(path, user, "client-key")
    if not certificate:
        yield context
        return
    # ssl reads a client certificate only from files: a private directory for as long as the request.
    with tempfile.TemporaryDirectory(prefix="kubeconfig-") as directory:
        pair = pathlib.Path(directory) / "client.pem"
        pair.touch(mode=0o600)
        pair.write_text(certificate + "\n" + (key or ""))
        try:
            context.load_cert_chain(pair)
        except ssl.SSLError as error:
            raise SubmitError(
                f"--kubeconfig {path}: its client certificate or key is unusable ({error})"
            ) from None
        yield context


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _pem(path: pathlib.Path, entry: dict[str, Any], name: str) -> str | None:
    try:
        if data := entry.get(f"{name}-data"):
            return base64.b64decode(data, validate=True).decode()
        if file := entry.get(name):
            return (path.parent / file).expanduser().read_text()
    except (ValueError, OSError) as error:
        raise SubmitError(f"--kubeconfig {path}: cannot read its {name} ({error})") from None
    return None


def _post(url: str, body: dict[str, Any], headers: dict[str, str], context: ssl.SSLContext) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise SubmitError(f"{url}: {error.code} {_message(error)}{_hint(error.code)}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise SubmitError(f"{url}: cannot reach it ({reason}); check the address and the network") from None


def _message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read()).get("message", error.reason))
    except ValueError:
        return str(error.reason)


def _hint(code: int) -> str:
    if code in (401, 403):
        return "; check the token or credentials and that they may create workflows in this namespace"
    if code == 404:
        return "; is Argo Workflows installed (its CRDs), and the namespace right?"
    return ""


def token_from(path: str | None) -> str | None:
    """A bearer token from ``path``, or from ``ARGO_TOKEN`` (never from a flag: flags show in ``ps``)."""
    if path:
        try:
            return pathlib.Path(path).read_text().strip().removeprefix("Bearer ")
        except OSError as error:
            raise SubmitError(f"--token-file {path}: cannot read it ({error.strerror})") from None
    token = os.environ.get("ARGO_TOKEN", "").strip()
    return token.removeprefix("Bearer ") or None
