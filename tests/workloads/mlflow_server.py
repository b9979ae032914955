"""A real MLflow tracking server for tests and benchmarks: ``mlflow server`` with a SQLite backend store
(or a given one: PostgreSQL, as in the cluster) and proxied artifacts under a directory, on a free
loopback port."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

START_TIMEOUT_S = 180  # the first start creates the schema (alembic migrations): slow on a loaded machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(root: pathlib.Path, backend_store_uri: str | None = None) -> Iterator[str]:
    """Runs the server while inside; yields its URI. Its log is ``root/server.log``."""
    import requests

    port = _free_port()
    command = [
        str(pathlib.Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", backend_store_uri or f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    with (root / "server.log").open("w") as log:
        # Its own process group: `mlflow server` runs the server in a child process, stopped with it.
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _healthy(requests, uri):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(
                        f"mlflow server did not answer on {uri}:\n{(root / 'server.log').read_text()}"
                    )
                time.sleep(0.5)
            yield uri
        finally:
            with contextlib.suppress(ProcessLookupError):  # it may have died on its own
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def _healthy(requests, uri: str) -> bool:
    try:
        return requests.get(f"{uri}/health", timeout=5).ok
    except (requests.ConnectionError, requests.Timeout):
        return False
