"""``ingest --engine spark``: the same shard directories as :mod:`workloads.data.datasets` writes,
converted by Spark tasks in parallel, from Fashion-MNIST IDX files or a Parquet table.

The job, in order (the Python side of it is :mod:`workloads.data.spark_records`, on Arrow batches;
the rest is Spark SQL in the JVM):

1. read: IDX pairs in record ranges (one task each, through :mod:`workloads.core.storage`), or a
   Parquet table through Spark's own reader (columns in docs/interfaces.md, "Parquet input");
2. check every row and hash every record (SHA-256 of pixels and label, in SQL); split an unsplit
   source by hash (``test_fraction``). The first bad row (by file and row number) fails the ingest
   before anything is written, unless ``rejects`` is given: then bad rows go to that Parquet table
   and are counted;
3. number: sort the distinct hashes of each split (hashes only, one task per split) and keep the
   hash each shard starts at;
4. write (a second read of the source): each record gets its shard number from its hash, each
   shard's records go to one task, which drops duplicates (same hash), orders them by hash and writes
   the shard (``shard_size`` records, the last of a split fewer);
5. commit: the driver writes each split's manifest last, with per-class counts and pixel statistics
   in its metadata. Until then readers see the previous dataset, or none.

Like the python engine, a split whose manifest says it was converted from the same source with the
same settings and class names is left as it is, and Spark is not started at all.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import pathlib
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from workloads.core import logs, storage
from workloads.core.errors import DataError, WorkloadError
from workloads.data import datasets
from workloads.data import spark_records as records
from workloads.data.shards import Manifest, ShardEntry, ShardWriter

log = logging.getLogger(__name__)

FORMATS = ("auto", "idx", "parquet")
PARQUET_IMAGE_SHAPE = (28, 28)
PARQUET_COLUMNS = {"image": True, "label": True, "split": False}  # name: required
REJECT_SCHEMA = "file string, row long, problem string, image binary, label long, split string"
IDX_CHUNK = 8192  # records an IDX task reads at a time


@dataclasses.dataclass(frozen=True)
class Job:
    """One Spark ingest: where from, where to, and how."""

    source: str
    output: str
    master: str
    data_format: str = "auto"
    shard_size: int = 4096
    test_fraction: float = 0.1
    rejects: str | None = None
    class_names: tuple[str, ...] = ()
    spark_conf: Mapping[str, str] = dataclasses.field(default_factory=dict)  # for the SparkSession


def conf_problem(pairs: Sequence[str]) -> str | None:
    """What is wrong with ``pairs`` as Spark settings ``KEY=VALUE`` (keys ``spark.*``), or None."""
    for pair in pairs:
        key, equals, _ = pair.partition("=")
        if not equals or not key.startswith("spark.") or key != key.strip() or " " in key:
            return f"each setting is KEY=VALUE with a spark.* key (e.g. spark.sql.shuffle.partitions=8), got {pair!r}"
    return None


def parse_conf(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs (checked by :func:`conf_problem`) as a mapping; a later key wins."""
    return dict(pair.split("=", 1) for pair in pairs)


def default_master() -> str:
    """``local[N]``, N = this machine's cores."""
    return f"local[{os.cpu_count() or 1}]"


# Spark's own log configuration for the driver JVM: errors only, one line each, on stderr (its default
# profile prints start-up warnings about the host name and native libraries to every run).
LOG4J2_PROPERTIES = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


def session(master: str, conf: Mapping[str, str] | None = None) -> Any:
    """A SparkSession on ``master`` with the settings ``conf`` (``spark.*`` keys, over this module's
    own), quiet; local workers run this interpreter. Executors elsewhere run their own: the image's,
    which has this package (the tasks import :mod:`workloads.data.spark_records`)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise WorkloadError(
            "--engine spark needs pyspark: install it with `pip install -e '.[spark]'`"
        ) from None
    builder = (
        SparkSession.builder.master(master)
        .appName("mlstack-ingest")
        .config("spark.ui.showConsoleProgress", "false")
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if master.startswith("local"):
        # pyspark starts its workers with PYSPARK_PYTHON (default: python3 on PATH): make it this one
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.ui.enabled", "false")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    # pyspark's Arrow functions warn that pandas 3 is new to them (they do not use pandas here) and
    # that they prefer type hints to an explicit UDF type (hints are what pyspark 4.3 fails to read)
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    warnings.filterwarnings("ignore", "It is preferred to specify type hints", UserWarning)
    with tempfile.TemporaryDirectory(prefix="mlstack-spark-") as directory:
        log_configuration = pathlib.Path(directory) / "log4j2.properties"  # read once, as the JVM starts
        log_configuration.write_text(LOG4J2_PROPERTIES)
        builder = builder.config(
            "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={log_configuration}"
        )
        try:
            spark = builder.getOrCreate()
        except Exception as error:
            raise WorkloadError(
                f"cannot start Spark on {master} ({_first_line(error)}); check --spark-master and that a "
                "Java 17+ runtime is installed (java on PATH or JAVA_HOME)"
            ) from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def ingest(job: Job, spark: Any = None) -> dict[str, Manifest]:
    """Converts ``job.source`` into ``job.output/{train,test}``; ``spark``: a session to use (else one
    is started on ``job.master`` and stopped at the end)."""
    problem = datasets.class_names_problem(job.class_names)
    if problem:
        raise DataError("--class-names", problem)
    plan = _plan(job)
    done = {
        split: datasets.already_done(storage.join(job.output, split), plan.source, plan.names)
        for split in datasets.SPLITS
    }
    if all(done.values()):
        log.info("shards already up to date", extra=logs.fields(url=job.output))
        return {split: manifest for split, manifest in done.items() if manifest}
    own = spark is None
    spark = spark or session(job.master, job.spark_conf)
    try:
        return _run(spark, job, plan)
    except WorkloadError:
        raise
    except Exception as error:
        if not type(error).__module__.startswith(("pyspark", "py4j")):
            raise
        raise WorkloadError(f"the Spark job failed: {_first_line(error)}") from None
    finally:
        if own:
            spark.stop()


@dataclasses.dataclass(frozen=True)
class _Plan:
    kind: str  # idx / parquet
    source: Mapping[str, Any]  # what the manifests record as the source (and the memo compares)
    names: tuple[str, ...]
    image_shape: tuple[int, int]
    idx_files: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)


def _plan(job: Job) -> _Plan:
    kind = detect_format(job.source, job.data_format)
    common = {"engine": "spark", "shard_size": job.shard_size}
    if kind == "idx":
        files = datasets.find_idx_files(job.source)
        names = datasets.idx_class_names(files, job.class_names)
        shape = datasets.idx_header(files["train"][0])[1]
        source = {"kind": "idx", "url": job.source, **common}
        return _Plan("idx", source, names, shape, files)
    names = tuple(job.class_names) or datasets.numbered_class_names()
    source = {"kind": "parquet", "url": job.source, "test_fraction": job.test_fraction, **common}
    return _Plan("parquet", source, names, PARQUET_IMAGE_SHAPE)


def detect_format(source: str, data_format: str) -> str:
    """``idx`` or ``parquet``: as given, or (``auto``) IDX when the four files are there, Parquet when
    ``source`` is a ``.parquet`` file or a directory holding some."""
    if data_format != "auto":
        return data_format
    try:
        datasets.find_idx_files(source)
        return "idx"
    except DataError:
        pass
    if _holds_parquet(source):
        return "parquet"
    raise DataError(
        source,
        "holds neither the four Fashion-MNIST IDX files nor Parquet files (*.parquet); "
        "pass --data-format idx or parquet to say which it should be",
    )


def _holds_parquet(source: str) -> bool:
    if storage.is_local(source):
        path = storage.local_path(source)
        return path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet")))
    fs, path = storage.filesystem(source)
    return path.rstrip("/").endswith(".parquet") or bool(fs.glob(path.rstrip("/") + "/**.parquet"))


def _run(spark: Any, job: Job, plan: _Plan) -> dict[str, Manifest]:
    """Two passes over the source: the first checks every row and sorts the good ones' hashes (kept in
    a small cached index: hash, split, where from, problem), the second writes the shards. Keeping
    the pixels between them costs more than reading (for IDX, a copy) or decoding them again: Spark's
    columnar cache of 600,000 images overflows the default 1 GiB heap."""
    from pyspark import StorageLevel

    rows = _idx_rows(spark, plan) if plan.kind == "idx" else _parquet_rows(spark, job, plan)
    entries = keyed(rows, job.test_fraction)
    index = entries.drop("pixels", "raw_image").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        kinds = {row["kind"]: row["count"] for row in index.groupBy("kind").count().collect()}
        _stop_on_fatal(index, kinds)
        rejected = _handle_rejects(rows, index, kinds, job)
        starts = shard_starts(index.filter(index["kind"] == records.OK), job.shard_size)
        good = entries.filter(entries["kind"] == records.OK)
        return _write_dataset(good, starts, job, plan, rejected, kinds.get(records.OK, 0))
    finally:
        index.unpersist()


def _idx_rows(spark: Any, plan: _Plan) -> Any:
    ranges = []
    for split, (images_url, labels_url) in plan.idx_files.items():
        total = datasets.idx_header(images_url)[0]
        step = max(math.ceil(total / spark.sparkContext.defaultParallelism), 1)
        ranges += [(split, images_url, labels_url, start, step) for start in range(0, total, step)]
    table = spark.createDataFrame(
        spark.sparkContext.parallelize(ranges, max(len(ranges), 1)), records.RANGE_SCHEMA
    )
    return table.mapInArrow(functools.partial(records.idx_batches, chunk=IDX_CHUNK), records.ROW_SCHEMA)


def _parquet_rows(spark: Any, job: Job, plan: _Plan) -> Any:
    from pyspark.sql import functions

    table = _read_parquet(spark, job.source)
    split = table["split"] if "split" in table.columns else functions.lit(None).cast("string").alias("split")
    selected = table.select("image", "label", split, "_metadata.file_path", "_metadata.row_index")
    check = functools.partial(records.check_batches, shape=plan.image_shape)
    return selected.mapInArrow(check, records.ROW_SCHEMA)


def _read_parquet(spark: Any, source: str) -> Any:
    from pyspark.errors import AnalysisException

    try:
        table = spark.read.parquet(source)
    except AnalysisException as error:
        raise DataError(source, f"cannot be read as a Parquet table ({_first_line(error)})") from None
    types = dict(table.dtypes)
    missing = [name for name, required in PARQUET_COLUMNS.items() if required and name not in types]
    if missing:
        raise DataError(
            source,
            f"the Parquet table has no column {', '.join(missing)} (it has {', '.join(types) or 'none'}); "
            "expected image (PNG bytes, 784 raw bytes or an array of 784 ints), label (int 0..9) and "
            "optionally split (train/test)",
        )
    wrong = _wrong_column_types(types)
    if wrong:
        raise DataError(source, f"the Parquet table's column {wrong}")
    return table


def _wrong_column_types(types: Mapping[str, str]) -> str | None:
    integral = ("tinyint", "smallint", "int", "bigint")
    image = types["image"]
    if image != "binary" and not (image.startswith("array<") and image[6:-1] in integral):
        return f"image is {image}: expected binary (PNG or raw pixels) or an array of ints"
    if types["label"] not in integral:
        return f"label is {types['label']}: expected an integer type"
    if "split" in types and types["split"] != "string":
        return f"split is {types['split']}: expected string (train/test)"
    return None


def _first_row(rows: Any, kind: str) -> Any:
    return rows.filter(rows["kind"] == kind).orderBy("file", "row").first()


def _stop_on_fatal(rows: Any, kinds: Mapping[str, int]) -> None:
    if kinds.get(records.FATAL):
        raise WorkloadError(_first_row(rows, records.FATAL)["problem"])


def _handle_rejects(rows: Any, index: Any, kinds: Mapping[str, int], job: Job) -> int:
    count = kinds.get(records.REJECT, 0)
    if not count:
        return 0
    if job.rejects is None:
        first = _first_row(index, records.REJECT)
        raise DataError(
            first["file"],
            f"row {first['row']}: {first['problem']} ({count} bad rows in all; pass --rejects URL to set "
            "them aside and ingest the rest)",
        )
    bad = rows.filter(rows["kind"] == records.REJECT).selectExpr(
        "file", "row", "problem", "raw_image AS image", "label", "split"
    )
    bad.write.mode("overwrite").parquet(job.rejects)
    log.warning(
        "%d bad rows set aside in %s", count, job.rejects, extra=logs.fields(url=job.rejects, rejected=count)
    )
    return count


def keyed(rows: Any, test_fraction: float) -> Any:
    """``rows`` with each record's ``hash`` and final ``split``: the hash is the record's identity, the
    SHA-256 of its pixels and label byte (identical records share it, so it is what duplicates are
    dropped by, what shards are ordered by and what an unsplit source is split by: ``test`` for the
    ``test_fraction`` of hashes whose first 8 bytes, as a number, are the smallest)."""
    from pyspark.sql import functions as f

    label_byte = f.unhex(f.lpad(f.hex(f.col("label")), 2, "0"))
    digest = f.sha2(f.concat(f.col("pixels"), label_byte), 256)
    threshold = math.ceil(test_fraction * 2**64)  # exact: a 64-bit prefix is below the float iff below this
    by_hash = (
        f.lit("test")
        if threshold >= 2**64
        else f.when(f.substring(digest, 1, 16) < f.lit(f"{threshold:016x}"), "test").otherwise("train")
    )
    return rows.withColumns({"split": f.coalesce(f.col("split"), by_hash), "hash": f.unhex(digest)})


def shard_starts(hashed: Any, shard_size: int) -> dict[str, list[bytes]]:
    """Per split, the hash of the first record of each shard: the hashes at positions 0, shard_size,
    2*shard_size ... of the split's distinct hashes in order. Only hashes are sorted (one task per
    split); the records stay where they are."""
    from pyspark.sql import Window
    from pyspark.sql import functions as f

    position = f.dense_rank().over(Window.partitionBy("split").orderBy("hash")) - 1
    firsts = (
        hashed.select("split", "hash", position.alias("position"))
        .where(f.col("position") % shard_size == 0)
        .select("split", "hash")
        .distinct()
        .collect()
    )
    return {
        split: sorted(bytes(r["hash"]) for r in firsts if r["split"] == split) for split in datasets.SPLITS
    }


def _write_dataset(
    good: Any, starts: Mapping[str, list[bytes]], job: Job, plan: _Plan, rejected: int, read: int
) -> dict[str, Manifest]:
    """Numbers each record's shard from its hash, then writes each shard in one task that gets its
    records in Arrow batches, drops duplicates and orders them by hash."""
    from pyspark.sql import functions as f
    from pyspark.util import PythonEvalType

    output, shape = job.output, plan.image_shape  # plain values: the tasks may run on other hosts
    # lambdas, unannotated: pyspark 4.3 fails reading the type hints of a partial or an annotated function
    shard_of = f.arrow_udf(
        lambda splits, hashes: records.shard_numbers(splits, hashes, starts),
        "long",
        PythonEvalType.SQL_SCALAR_ARROW_UDF,
    )
    write = lambda key, table: records.write_shard(  # noqa: E731
        key, table, output=output, shape=shape, num_classes=datasets.NUM_CLASSES
    )
    placed = good.select("split", "hash", "pixels", "label", shard_of("split", "hash").alias("shard"))
    results = placed.groupBy("split", "shard").applyInArrow(write, records.RESULT_SCHEMA).collect()
    errors = sorted(row["error"] for row in results if row["error"])
    if errors:
        raise WorkloadError(errors[0])
    by_split = {
        split: sorted((r for r in results if r["split"] == split), key=lambda r: r["shard"])
        for split in datasets.SPLITS
    }
    kept = sum(sum(r["class_counts"]) for r in results)
    statistics = {"duplicates_dropped": read - kept, "rejected": rejected}
    return {split: _publish(job, plan, split, by_split[split], statistics) for split in datasets.SPLITS}


def _publish(job: Job, plan: _Plan, split: str, results: list[Any], extra: Mapping[str, Any]) -> Manifest:
    """Writes the manifest of ``split`` (the commit point) and removes the files of the dataset it replaces."""
    entries = [_entry(json.loads(result["entry"])) for result in results]
    metadata = {
        "source": dict(plan.source),
        "complete": True,
        "class_names": list(plan.names),
        **extra,
        **_statistics(results, math.prod(plan.image_shape)),
    }
    url = storage.join(job.output, split)
    writer = ShardWriter(
        url, shard_size=job.shard_size, image_shape=plan.image_shape, metadata=metadata, resume=False
    )
    writer.publish_entries(entries)
    log.info("wrote shards", extra=logs.fields(url=url, records=writer.manifest.records, shards=len(entries)))
    return writer.manifest


def _entry(data: Mapping[str, Any]) -> ShardEntry:
    return ShardEntry(**{**data, "block_crc32": tuple(data["block_crc32"])})


def _statistics(results: list[Mapping[str, Any]], pixels: int) -> dict[str, Any]:
    """Per-class counts and the mean and standard deviation of the pixel values (0..255)."""
    counts = [sum(column) for column in zip(*(r["class_counts"] for r in results), strict=True)] or [
        0
    ] * datasets.NUM_CLASSES
    values = sum(counts) * pixels
    total = sum(r["pixel_sum"] for r in results)
    squares = sum(r["pixel_squares"] for r in results)
    mean = total / values if values else 0.0
    std = math.sqrt(max(squares / values - mean * mean, 0.0)) if values else 0.0
    return {"class_counts": counts, "pixel_mean": round(mean, 6), "pixel_std": round(std, 6)}


def _first_line(error: BaseException) -> str:
    """What went wrong, in one line: the message's first line, or for a Python worker's exception
    (its traceback inside a Spark error) the traceback's last unindented line."""
    text = str(error).strip()
    if "Traceback (most recent call last)" in text:
        text = text.rsplit("Traceback (most recent call last)", 1)[1]
        unindented = [line for line in text.splitlines() if line and not line[0].isspace()]
        return unindented[-1] if unindented else type(error).__name__
    return text.splitlines()[0] if text else type(error).__name__
