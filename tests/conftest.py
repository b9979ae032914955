"""Suite-wide rules (markers that need hardware or a cluster skip with the reason, never silently) and the
fixtures of more than one tree: a real S3 endpoint."""

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import pytest


def _gpu_absent_reason() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU here: nvidia-smi is not installed"
    if not os.path.exists("/dev/nvidia0"):
        return "no NVIDIA GPU here: /dev/nvidia0 does not exist"
    return None


def _cluster_absent_reason() -> str | None:
    if not os.environ.get("KUBECONFIG"):
        return "no Kubernetes API server here: set KUBECONFIG to run cluster tests"
    return None


def pytest_collection_modifyitems(config, items):
    reasons = {"gpu": _gpu_absent_reason(), "cluster": _cluster_absent_reason()}
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
    # The molecule scenarios first, in their own order (longest first): each holds a worker for minutes, and the
    # other workers run the rest around them. Then the modules with slow tests, the quick ones last, so that the
    # workers end together (longest work first). pytest-xdist hands out work in this order (the Makefile turns
    # its reordering by group size off).
    slow_modules = {item.path for item in items if "slow" in item.keywords}
    items.sort(key=lambda item: ("molecule" not in item.keywords, item.path not in slow_modules))


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return pick_free_port()


def pick_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 wire-protocol endpoint (moto_server) on a free loopback port, for the whole session."""
    port = pick_free_port()
    server = subprocess.Popen(
        [str(pathlib.Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    import requests

    # On a loaded machine the first answer can take seconds (moto imports, and compiles, its services on
    # first use): a timed-out probe is retried like a refused connection, until the deadline.
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(endpoint, timeout=5)
            break
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"moto_server did not answer on {endpoint} within 60 s") from None
            time.sleep(0.2)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server (SQLite backend store, proxied artifacts in a temporary directory)
    on a free loopback port, for the whole session; its URI."""
    from tests.workloads.mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="session")
def mlflow_postgres_server(tmp_path_factory):
    """The same server with a PostgreSQL backend store (Debian's PostgreSQL), as the cluster runs it."""
    from tests.support.postgres import postgres_server
    from tests.workloads.mlflow_server import mlflow_server

    with postgres_server() as database, mlflow_server(tmp_path_factory.mktemp("mlflow-pg"), database) as uri:
        yield uri
