"""Shard read throughput over ``hdfs://`` and ``webhdfs://`` against local disk: the same shards, side by side.

A real HDFS (one NameNode, one DataNode, from `make releases`) on loopback; the same synthetic shards are
written to a local directory and to HDFS through both schemes with the data layer's ``ShardWriter``.
Then, for each place: the raw bytes of every shard (``storage.read_bytes``), and a cold ``ShardSet``
read of the whole split (every shard fetched into an empty cache, verified against its SHA-256 and
memory-mapped; on local disk the files are mapped in place and verified). Best of ``ROUNDS`` rounds.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import statistics
import tempfile
import time

RECORDS = 61_440  # 15 shards of 4096 records, ~48 MB
SHARD_SIZE = 4096
ROUNDS = 3


def _timed(work) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def run(workdir: pathlib.Path) -> str:
    import numpy as np

    from tests.support.hadoop_release import HdfsCluster
    from tests.support.releases import HADOOP
    from workloads.core import storage
    from workloads.data.shards import ShardCache, ShardSet, ShardWriter

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (RECORDS, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, RECORDS, dtype=np.uint8)
    load_before = os.getloadavg()[0]
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        scratch_path = pathlib.Path(scratch)
        home = HADOOP.unpack(scratch_path)
        began = time.monotonic()
        with HdfsCluster.running(home, scratch_path / "hdfs") as cluster:
            started_s = time.monotonic() - began
            places = {
                "local disk": str(scratch_path / "local"),
                "hdfs://": f"{cluster.url}/bench/hdfs",
                "webhdfs://": f"{cluster.webhdfs_url}/bench/webhdfs",
            }
            for name, url in places.items():

                def write(url=url):
                    writer = ShardWriter(url, shard_size=SHARD_SIZE, resume=False, publish_each_commit=False)
                    writer.write(images, labels)
                    writer.commit()
                    writer.publish()

                timings: dict[str, list[float]] = {"write": [], "raw": [], "shardset": []}
                for _ in range(ROUNDS):
                    timings["write"].append(_timed(write))
                files = [storage.join(url, e.file) for e in ShardSet.open(url).manifest.shards]
                for _ in range(ROUNDS):
                    timings["raw"].append(_timed(lambda files=files: [storage.read_bytes(f) for f in files]))
                for round_ in range(ROUNDS):
                    cache = scratch_path / f"cache-{round_}"

                    def cold_read(url=url, cache=cache):
                        shard_set = ShardSet.open(url, cache=ShardCache(cache))
                        assert shard_set.read_all()[0].shape[0] == RECORDS

                    timings["shardset"].append(_timed(cold_read))
                    shutil.rmtree(cache, ignore_errors=True)
                results[name] = timings
            total_bytes = sum(e.bytes for e in ShardSet.open(places["local disk"]).manifest.shards)
    load_after = os.getloadavg()[0]

    def best(name: str, kind: str) -> float:
        return min(results[name][kind])

    def cell(name: str, kind: str, unit: str) -> str:
        seconds = best(name, kind)
        value = total_bytes / seconds / 1e6 if unit == "MB/s" else RECORDS / seconds
        spread = f"{statistics.median(results[name][kind]):.2f}"
        return f"{value:,.0f} {unit} ({seconds:.2f} s; median {spread} s)"

    def ratio(name: str, kind: str) -> str:
        return f"{best('local disk', kind) / best(name, kind):.2f}x"

    rows = [
        ("write with `ShardWriter`", "write", "MB/s"),
        ("raw shard bytes, `storage.read_bytes`", "raw", "MB/s"),
        ("cold `ShardSet` read: fetch, verify, map", "shardset", "records/s"),
    ]
    lines = [
        "## Storage: shard throughput over hdfs:// and webhdfs:// vs local disk",
        "",
        f"Load average {load_before:.1f} -> {load_after:.1f} (the machine is shared).",
        "",
        f"{RECORDS:,} synthetic 28x28 records in {RECORDS // SHARD_SIZE} shards of {SHARD_SIZE} "
        f"({total_bytes / 1e6:.1f} MB), the same bytes in each place. HDFS is Apache Hadoop "
        f"{HADOOP.version} from `make releases`: one NameNode and one DataNode on loopback (serial GC, "
        f"heaps of 256 and 192 MiB, replication 1; it answered {started_s:.1f} s after its start), "
        "on the same cores as the benchmark. `hdfs://` is hdfs-native (HDFS's RPC and data-transfer "
        "protocols in Rust, no JVM in the client); `webhdfs://` is fsspec's WebHDFS over HTTP, each read "
        "redirected by the NameNode to the DataNode. Best of "
        f"{ROUNDS} rounds (its time and the median in brackets); local reads come from the page cache.",
        "",
        "| | local disk | hdfs:// | local / hdfs | webhdfs:// | local / webhdfs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, kind, unit in rows:
        lines.append(
            f"| {label} | {cell('local disk', kind, unit)} | {cell('hdfs://', kind, unit)} | "
            f"{ratio('hdfs://', kind)} | {cell('webhdfs://', kind, unit)} | {ratio('webhdfs://', kind)} |"
        )
    lines += [
        "",
        "Writes to HDFS are bounded by latency, not bandwidth: closing a file costs ~0.5 s whatever its size "
        "(measured: 0.52 s for 1 byte and for 3 MB), because the NameNode completes a file only once the "
        "DataNode has reported its block, and hdfs-native asks again after a fixed 500 ms (Hadoop's own "
        "client after 400 ms). Each shard is one file, plus the manifest at publish: shards of thousands "
        "of records keep that small per record.",
        "",
        "A cold `ShardSet` read over HDFS copies each shard into the local cache and checks its SHA-256 "
        "before mapping it; later epochs read the cached copies at local-disk speed. A training step on "
        "CPU consumes a few thousand records/s, so the cold read is what sets the time to the first "
        "batch, not the steady rate.",
    ]
    return "\n".join(lines)
