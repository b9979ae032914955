"""Fixtures for the workloads tests: a real S3 endpoint on loopback and small synthetic datasets."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import pick_free_port


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


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch):
    """A fresh bucket; AWS_ENDPOINT_URL and test credentials point every client at the loopback server."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"mlstack-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    import fsspec

    fsspec.filesystem("s3").clear_instance_cache()
    return name


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> pathlib.Path:
    """Synthetic Fashion-MNIST, 2048 training and 512 held-out records in 256-record shards."""
    from workloads.data import datasets

    root = tmp_path_factory.mktemp("dataset")
    datasets.ingest_synthetic(str(root), train_records=2048, test_records=512, seed=0, shard_size=256)
    return root
