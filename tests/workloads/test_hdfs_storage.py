"""The data layer on a real HDFS: one NameNode and one DataNode from the Hadoop release `make releases`
builds, started once per test session (per pytest-xdist worker), reached over ``hdfs://`` (hdfs-native,
no JVM on the client side) and ``webhdfs://`` (the NameNode's REST API)."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from tests.support.hadoop_release import HdfsCluster
from tests.support.releases import HADOOP, required
from tests.workloads.support import ROOT, run_workloads, subprocess_env
from tests.workloads.test_storage_errors import error_line
from workloads.core import storage
from workloads.core.errors import StorageError
from workloads.data.shards import ShardCache, ShardSet, ShardWriter

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hdfs")]
SCHEMES = ("hdfs", "webhdfs")


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory) -> Iterator[HdfsCluster]:
    """One NameNode and one DataNode on free loopback ports (small heaps), for the whole session; stopped
    at its end, also after a failure. When the release cannot be built, every test here fails with one
    line naming `make releases` (never a silent skip)."""
    home = required(HADOOP, tmp_path_factory.mktemp("hadoop-release"))
    with HdfsCluster.running(home, tmp_path_factory.mktemp("hdfs")) as cluster:
        yield cluster


def root_url(cluster: HdfsCluster, kind: str) -> str:
    return cluster.url if kind == "hdfs" else cluster.webhdfs_url


def fresh_url(cluster: HdfsCluster, kind: str, name: str) -> str:
    """A directory URL no other test uses."""
    return f"{root_url(cluster, kind)}/{name}-{uuid.uuid4().hex[:8]}"


def records(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count, dtype=np.uint8)


@pytest.mark.parametrize("kind", SCHEMES)
def test_shards_written_to_hdfs_are_the_same_bytes_as_on_local_disk_and_read_back_exactly(
    hdfs, kind, tmp_path
):
    images, labels = records(300)
    local, remote = tmp_path / "local", fresh_url(hdfs, kind, "shards")
    for url in (str(local), remote):
        writer = ShardWriter(url, shard_size=128)
        writer.write(images, labels)
        writer.commit()
    here = ShardSet.open(str(local))
    there = ShardSet.open(remote, cache=ShardCache(tmp_path / "cache"))
    assert there.manifest == here.manifest and len(there.manifest.shards) == 3
    for name in ["manifest.json", *(entry.file for entry in here.manifest.shards)]:
        assert storage.read_bytes(storage.join(remote, name)) == (local / name).read_bytes(), name
    got_images, got_labels = there.read_all()
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("kind", SCHEMES)
def test_a_file_published_again_and_again_while_readers_read_is_always_whole(hdfs, kind):
    """publish_bytes renames over the old file with HDFS's OVERWRITE rename: readers find the old file or
    the new one, whole, and never find none (the plain rename needed the old file removed first)."""
    url = storage.join(fresh_url(hdfs, kind, "published"), "model.bin")
    versions = [bytes([index]) * (256 * 1024 + index) for index in range(10)]
    storage.publish_bytes(url, versions[0])
    seen: list[bytes] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(storage.read_bytes(url))
            except Exception as error:  # every failure is what the test reports
                failures.append(error)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for version in versions[1:]:
            storage.publish_bytes(url, version)
            time.sleep(0.05)
    finally:
        stop.set()
        for reader in readers:
            reader.join(60)
    assert not failures, failures[:3]
    assert len(seen) > len(versions), "the readers hardly read: nothing was tested"
    whole = {(len(v), v[0]) for v in versions}
    assert all((len(data), data[0]) in whole and data == bytes([data[0]]) * len(data) for data in seen)
    assert storage.read_bytes(url) == versions[-1]
    fs, path = storage.filesystem(url)
    assert [p.rsplit("/", 1)[1] for p in fs.ls(path.rsplit("/", 1)[0], detail=False)] == ["model.bin"]


@pytest.mark.parametrize("kind", SCHEMES)
def test_a_directory_hdfs_does_not_let_this_user_write_is_one_line_naming_url_and_user(hdfs, kind):
    owned = f"/owned-{uuid.uuid4().hex[:8]}"
    for args in (("-mkdir", "-p", owned), ("-chown", "alice:alice", owned), ("-chmod", "755", owned)):
        done = hdfs.hdfs("dfs", *args)
        assert done.returncode == 0, done.stderr[-2000:]
    url = f"{root_url(hdfs, kind)}{owned}/data"
    result = run_workloads(
        "ingest", "--output", url, "--synthetic-train", "8", "--synthetic-test", "8",
        env=subprocess_env(HADOOP_USER_NAME="bob"), timeout=120,
    )  # fmt: skip
    line = error_line(result)
    assert url in line and "access refused" in line and "user=bob" in line and "HADOOP_USER_NAME" in line


@pytest.mark.parametrize("kind", SCHEMES)
def test_an_output_under_a_file_on_hdfs_is_one_line_saying_so_not_a_permission_problem(hdfs, kind):
    file_url = storage.join(fresh_url(hdfs, kind, "afile"), "afile")
    storage.publish_bytes(file_url, b"not a directory")
    url = f"{file_url}/data"
    result = run_workloads(
        "ingest", "--output", url, "--synthetic-train", "8", "--synthetic-test", "8", timeout=120
    )
    line = error_line(result)
    assert url in line and "(is not a directory)" in line and "access refused" not in line


def test_ingest_train_and_select_run_end_to_end_on_an_hdfs_dataset(hdfs, tmp_path):
    root = fresh_url(hdfs, "hdfs", "pipeline")
    data, models = f"{root}/data", f"{root}/models"
    steps = [
        ("ingest", "--output", data, "--synthetic-train", "512", "--synthetic-test", "256", "--shard-size", "128"),
        ("train", "--data", data, "--output", f"{models}/plain", "--epochs", "1", "--batch-size", "64",
         "--cache-dir", str(tmp_path / "cache"), "--metrics-port", "0"),
        ("select", "--candidates", models, "--data", data, "--results", f"{root}/selection.json",
         "--model-base-path", f"{root}/serving", "--min-accuracy", "0"),
    ]  # fmt: skip
    for step in steps:
        result = run_workloads(*step, timeout=600)
        assert result.returncode == 0, f"{step[0]}: {result.stderr[-3000:]}"
    assert ShardSet.open(f"{data}/train", cache=ShardCache(tmp_path / "cache")).manifest.records == 512
    table = storage.read_bytes(f"{root}/selection.json").decode()
    assert f'"{models}/plain"' in table  # the candidate's URL keeps the NameNode's host:port
    assert storage.exists(f"{root}/serving/fashion_mnist/1/saved_model.pb")
    assert not (ROOT / "hdfs:").exists()  # nothing took the URL for a local path


def test_a_file_whose_only_datanode_is_gone_is_a_storage_error_pointing_at_the_datanodes(hdfs):
    urls = [storage.join(fresh_url(hdfs, kind, "blocks"), "shard.bin") for kind in SCHEMES]
    for url in urls:
        storage.publish_bytes(url, b"x" * 4096)
    hdfs.datanodes[0].kill()
    try:
        errors = []
        for url in urls:
            with pytest.raises(StorageError) as caught:
                storage.read_bytes(url)
            errors.append(caught.value)
    finally:
        hdfs.datanodes[0].start()
        hdfs.wait_until_ready(120)
        serving_again(urls[0])
    for url, error in zip(urls, errors, strict=True):
        assert error.url == url and "DataNode" in str(error) and "dfsadmin -report" in error.hint, error
        assert "\n" not in str(error) and "DatanodeInfoProto" not in str(error)  # not the client's dump


def serving_again(url: str, timeout_s: float = 90) -> None:
    """Until ``url`` reads again: a restarted DataNode is live (and the NameNode out of safe mode) a few
    seconds before it serves its blocks, since the NameNode never saw it die (measured)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            storage.read_bytes(url)
            return
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_stopped_namenode_is_one_line_naming_the_url_within_seconds(hdfs, tmp_path):
    urls = [fresh_url(hdfs, kind, "data") for kind in SCHEMES]
    hdfs.namenode.stop()
    try:
        results = []
        for url in urls:
            began = time.monotonic()
            result = run_workloads("search", "--data", url, "--workdir", str(tmp_path / "w"), timeout=120)
            results.append((url, result, time.monotonic() - began))
    finally:
        hdfs.namenode.start()
        hdfs.wait_until_ready(120)
    for url, result, elapsed in results:
        line = error_line(result)
        assert url in line and "Connection refused" in line and "NameNode" in line, line
        assert elapsed < 30, f"{url}: took {elapsed:.1f} s"
    assert not (tmp_path / "w" / "trials").exists()


def test_a_process_that_used_hdfs_can_still_fork(hdfs):
    """fsspec drops its cached filesystems in a forked child, and dropping hdfs-native's client there waits
    forever: Spark starting its JVM (a subprocess with a preexec_fn) hung after an hdfs:// read."""
    assert storage.exists(f"{hdfs.url}/")  # a filesystem only fsspec's cache holds, as commands leave it
    gc.collect()
    pid = os.fork()
    if pid == 0:  # the child runs the at-fork handlers, then leaves at once
        os._exit(0)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    if done == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done != (0, 0), "the forked child hung in fsspec's at-fork handler"
