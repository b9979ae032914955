"""The serving pod as the Pulumi program declares it, over an S3 model store: its mirror sidecar run with
exactly the generated command, args, environment and volumes (the credentials: the Secret it mounts) against a
real S3 endpoint (moto_server), and serve-dev (the stand-in for the stock TF Serving, which does not run
here) reading TF Serving's generated model config, both with the pod's paths (tests/support/pod_rehearsal.py
stands in for the kubelet).

It proves the parts agree: the Secret's files are what the storage layer reads, the sidecar mirrors the
store promotion writes into the directory TF Serving's config names, the sidecar's startup probe passes
once it has looked at an empty store (a first deploy: TF Serving then starts with no model and waits), each
promoted version gets served, and a promotion interrupted before its saved_model.pb is never served.
"""

from __future__ import annotations

import pathlib
import shutil
import uuid

import pytest

from infra.config import ModelSource, Serving
from infra.specs import model_store
from infra.specs import serving as serving_specs
from tests.support.pod_rehearsal import LocalPod
from tests.system.rig import IMAGES, declared, local_model_config
from tests.workloads.serving.processes import start_dev_server, wait_until
from tests.workloads.serving.savedmodels import make_test_savedmodel
from workloads.core import storage
from workloads.serving.client import ServingError, make_client
from workloads.serving.tfs_config import MODEL_NAME
from workloads.workflow import promote

pytestmark = pytest.mark.slow
SECRET = "model-store-credentials"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mirror-test", "AWS_SECRET_ACCESS_KEY": "mirror-test-secret"}


def client_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


def served_version(client) -> int | None:
    """The newest AVAILABLE version; None while none is (TF Serving answers 404)."""
    try:
        return client.latest_available_version()
    except ServingError:
        return None


def promote_copy(built: pathlib.Path, store: str) -> int:
    version, _ = promote.promote(lambda d: shutil.copytree(built, d, dirs_exist_ok=True), store, MODEL_NAME)
    return version


def test_the_serving_pod_serves_what_promotion_writes_to_s3(s3_endpoint, tmp_path, monkeypatch):
    import boto3

    bucket = f"models-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, **client_credentials()).create_bucket(Bucket=bucket)
    # The promoting step's pod: the same Secret mounted as files; no credential in any environment, so
    # the sidecar (which inherits this process's environment here) has only its own mount to go by.
    promoter_secret = tmp_path / "promoter-credentials"
    promoter_secret.mkdir()
    for key, value in CREDENTIALS.items():
        (promoter_secret / key).write_text(value)
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(storage.S3_CREDENTIALS_DIR_ENV, str(promoter_secret))
    monkeypatch.setenv(storage.S3_ENDPOINT_ENV, s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    source = ModelSource(
        kind="s3", base=f"s3://{bucket}/serving", s3_endpoint=s3_endpoint, s3_region="us-east-1",
        credentials_secret=SECRET,
    )  # fmt: skip
    objects = serving_specs.objects(Serving(model_source=source), IMAGES, "10.0.0.0/16")
    pod_spec = declared("Deployment", objects)["spec"]["template"]["spec"]
    (mirror,) = pod_spec["initContainers"]
    pod = LocalPod(
        {
            "/tmp": tmp_path / "pod-tmp",
            model_store.MIRROR_DIR: tmp_path / "mirror",
            model_store.CREDENTIALS_DIR: tmp_path / "credentials",
        },
        secrets={SECRET: CREDENTIALS},
        pod_volumes=pod_spec["volumes"],
    )
    assert not pod.probe(mirror, "startupProbe")
    sidecar = pod.start(mirror, tmp_path / "logs")
    server = None
    try:
        # A first deploy: the store is empty; the sidecar looks once, then TF Serving starts with no model.
        wait_until(
            lambda: pod.probe(mirror, "startupProbe"), 120, f"the mirror's startup probe: {sidecar.log()}"
        )
        config = local_model_config(pod, declared("ConfigMap", objects), tmp_path / "config")
        server = start_dev_server(tmp_path / "serve", "--model-config-file", str(config))
        built = {v: make_test_savedmodel(tmp_path / "built", v, seed=v) for v in (1, 2)}
        with make_client(server.rest_url, MODEL_NAME) as client:
            assert promote_copy(built[1], source.base) == 1
            wait_until(lambda: served_version(client) == 1, 120, "version 1 served")
            # An interrupted promotion: version 2's files without the saved_model.pb written last.
            for path in sorted(built[2].rglob("*")):
                if path.is_file() and path.name != promote.SAVED_MODEL_PB:
                    storage.upload_file(path, f"{source.base}/{MODEL_NAME}/2/{path.relative_to(built[2])}")
            assert promote_copy(built[1], source.base) == 3  # the next promotion, complete
            wait_until(lambda: served_version(client) == 3, 120, "version 3 served")
        # The poll that mirrored 3 saw 2 incomplete and left it out.
        assert sorted(p.name for p in (tmp_path / "mirror" / MODEL_NAME).iterdir()) == ["1", "3"]
        assert sidecar.alive(), sidecar.log()
    finally:
        if server is not None:
            server.terminate()
        sidecar.terminate()
