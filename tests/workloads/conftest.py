"""Fixtures for the workloads tests: a bucket on the real S3 endpoint (tests/conftest.py), small synthetic
datasets, test SavedModels and a development server (shared by the serving and streaming tests)."""

from __future__ import annotations

import pathlib
import uuid

import pytest

from tests.workloads.serving.processes import DevServer, start_dev_server
from tests.workloads.serving.savedmodels import make_test_savedmodel
from workloads.serving import tfs_config

MODEL = tfs_config.MODEL_NAME


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


@pytest.fixture(scope="session")
def model_base(tmp_path_factory) -> pathlib.Path:
    """``<tmp>/fashion_mnist/{1,2}``: two versions with different weights (``make_test_savedmodel``)."""
    base = tmp_path_factory.mktemp("models") / MODEL
    make_test_savedmodel(base, 1, seed=1)
    make_test_savedmodel(base, 2, seed=2)
    return base


@pytest.fixture(scope="session")
def dev_server(model_base, tmp_path_factory) -> DevServer:
    """serve-dev over versions 1 and 2, labels stable=1 and canary=2, batching on, REST and gRPC.

    The request size limit is 1 MiB so the oversize test need not send much.
    """
    workdir = tmp_path_factory.mktemp("serve-dev")
    config = workdir / "models.config"
    config.write_text(
        tfs_config.render_model_config(
            [
                tfs_config.ServedModel(
                    MODEL, str(model_base), versions=(1, 2), labels=(("canary", 2), ("stable", 1))
                )
            ]
        )
    )
    server = start_dev_server(
        workdir, "--model-config-file", str(config), "--enable-batching", "--max-request-bytes", str(1 << 20)
    )
    yield server
    code = server.terminate()
    assert code == 0, f"serve-dev exited {code} on SIGTERM:\n{server.log()[-3000:]}"
