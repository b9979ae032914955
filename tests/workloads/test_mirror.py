"""The model-store mirror (`mirror-models`, TF Serving's sidecar): versions appear whole and only once
promotion finished them, rollbacks propagate, failures leave nothing half-copied, and serve-dev (the
stand-in for TF Serving) serves what it mirrored from a real S3 endpoint (moto_server)."""

from __future__ import annotations

import pathlib
import shutil
import threading

import pytest

from tests.workloads.serving.processes import start_dev_server, wait_until
from tests.workloads.serving.savedmodels import make_test_savedmodel
from tests.workloads.support import run_workloads, subprocess_env
from workloads.core import storage
from workloads.serving.client import make_client
from workloads.serving.tfs_config import MODEL_NAME
from workloads.workflow import mirror
from workloads.workflow.promote import SAVED_MODEL_PB


def fake_version(model: pathlib.Path, version: int, complete: bool = True) -> None:
    """A version directory as promotion leaves it (``saved_model.pb`` last) or while it uploads."""
    directory = model / str(version)
    (directory / "variables").mkdir(parents=True)
    (directory / "variables" / "variables.index").write_bytes(b"v%d" % version)
    if complete:
        (directory / SAVED_MODEL_PB).write_bytes(b"graph %d" % version)


def test_only_versions_whose_graph_is_there_are_mirrored_each_whole(tmp_path):
    store, volume = tmp_path / "store" / MODEL_NAME, tmp_path / "volume"
    fake_version(store, 1)
    fake_version(store, 2, complete=False)  # still uploading
    assert mirror.mirror_once(str(store), volume) == mirror.Changes(copied=(1,))
    assert mirror.local_versions(volume) == [1]
    assert (volume / "1" / "variables" / "variables.index").read_bytes() == b"v1"
    (store / "2" / SAVED_MODEL_PB).write_bytes(b"graph 2")
    assert mirror.mirror_once(str(store), volume) == mirror.Changes(copied=(2,))
    assert mirror.mirror_once(str(store), volume) == mirror.Changes()  # nothing copied twice


def test_a_version_removed_from_the_store_is_removed_and_leftovers_of_a_killed_run_go(tmp_path):
    store, volume = tmp_path / "store", tmp_path / "volume"
    fake_version(store, 1)
    fake_version(store, 2)
    mirror.mirror_once(str(store), volume)
    shutil.rmtree(store / "2")  # a rollback
    (volume / ".mirroring-7" / "variables").mkdir(parents=True)
    assert mirror.mirror_once(str(store), volume) == mirror.Changes(removed=(2,))
    assert sorted(p.name for p in volume.iterdir()) == ["1"]


def test_a_copy_that_fails_half_way_leaves_no_version_and_the_next_poll_copies_it(tmp_path, monkeypatch):
    store, volume = tmp_path / "store", tmp_path / "volume"
    fake_version(store, 1)
    real_download = storage.download_tree

    def broken(url: str, destination: pathlib.Path) -> None:
        (destination / "variables").mkdir(parents=True)
        raise storage.StorageError(url, "connection reset", "")

    monkeypatch.setattr(storage, "download_tree", broken)
    with pytest.raises(storage.StorageError):
        mirror.mirror_once(str(store), volume)
    assert list(volume.iterdir()) == []
    monkeypatch.setattr(storage, "download_tree", real_download)
    assert mirror.mirror_once(str(store), volume).copied == (1,)


def test_an_unreachable_store_is_a_warning_and_the_mirror_keeps_polling(tmp_path, caplog):
    stop, polls = threading.Event(), []

    def failed_polls() -> int:
        return sum("retrying" in r.getMessage() for r in caplog.records)

    def stop_after_two() -> None:
        wait_until(lambda: failed_polls() >= 2, 60, "two failed polls")
        stop.set()

    threading.Thread(target=stop_after_two, daemon=True).start()
    mirror.mirror_forever("webhdfs://127.0.0.1:9/models/m", tmp_path / "volume", 0.05, stop, polls.append)
    assert not polls and failed_polls() >= 2


@pytest.mark.slow
def test_serve_dev_serves_each_version_mirrored_from_s3(s3_bucket, s3_endpoint, tmp_path):
    local = tmp_path / "exported"
    make_test_savedmodel(local / MODEL_NAME, 1, seed=1)
    store = f"s3://{s3_bucket}/models"
    for path in sorted((local / MODEL_NAME / "1").rglob("*")):
        if path.is_file():
            storage.upload_file(path, f"{store}/{MODEL_NAME}/1/{path.relative_to(local / MODEL_NAME / '1')}")
    volume = tmp_path / "volume"
    env = subprocess_env(AWS_ENDPOINT_URL=s3_endpoint)
    once = run_workloads("mirror-models", "--model-store", store, "--target", str(volume), "--once", env=env)
    assert once.returncode == 0, once.stderr
    server = start_dev_server(tmp_path / "serve", "--model-base-path", str(volume / MODEL_NAME))
    try:
        with make_client(server.rest_url, MODEL_NAME) as client:
            assert wait_until(client.latest_available_version, 120, "version 1 served") == 1
    finally:
        server.terminate()


def test_a_long_running_mirror_sees_versions_promoted_after_its_first_look_at_s3(
    s3_bucket, s3_endpoint, tmp_path
):
    """s3fs caches listings for the process's life by default: the mirror then never saw a version that
    another process (the promoting step's pod) wrote after its first look."""
    import boto3

    other_writer = boto3.client("s3", endpoint_url=s3_endpoint)
    volume, local = tmp_path / "volume", tmp_path / "store"
    for version in (1, 2):
        fake_version(local, version)
        for path in sorted((local / str(version)).rglob("*")):
            if path.is_file():
                key = f"models/{MODEL_NAME}/{version}/{path.relative_to(local / str(version))}"
                other_writer.put_object(Bucket=s3_bucket, Key=key, Body=path.read_bytes())
        changes = mirror.mirror_once(f"s3://{s3_bucket}/models/{MODEL_NAME}", volume)
        assert changes == mirror.Changes(copied=(version,))
