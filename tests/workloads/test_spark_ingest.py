"""`ingest --engine spark`: a real Spark (local[2]) converting IDX files and Parquet tables into shards."""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np
import pytest

from tests.workloads.support import records, run_workloads, write_idx
from workloads.commands import ingest as ingest_command
from workloads.core import settings
from workloads.core.errors import DataError
from workloads.data import datasets, spark_ingest, synthetic
from workloads.data.sampling import WorkerBatches
from workloads.data.shards import MANIFEST_NAME, ShardSet
from workloads.serving.payloads import encode_image

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install -e '.[spark]')")

MASTER = "local[2]"
SHARD_SIZE = 64


@pytest.fixture(scope="module")
def spark():
    session = spark_ingest.session(MASTER)
    yield session
    session.stop()


def ingest(spark, source, output, **settings) -> dict:
    job = spark_ingest.Job(str(source), str(output), MASTER, shard_size=SHARD_SIZE, **settings)
    return spark_ingest.ingest(job, spark)


def write_table(
    spark, path: pathlib.Path, rows: list, schema: str = "image binary, label int"
) -> pathlib.Path:
    """A Parquet table of ``rows`` in one file, rows in the order given."""
    spark.createDataFrame(rows, schema).coalesce(1).write.parquet(str(path))
    return path


@pytest.fixture(scope="module")
def idx_outputs(spark, tmp_path_factory):
    """The same IDX files converted by both engines: (python output, spark output, spark manifests)."""
    root = tmp_path_factory.mktemp("idx")
    raw = write_idx(root / "raw")
    datasets.ingest_idx(str(raw), str(root / "python"), shard_size=SHARD_SIZE)
    manifests = ingest(spark, raw, root / "spark")
    return root / "python", root / "spark", manifests


def test_spark_engine_holds_the_python_engines_records(idx_outputs):
    python, spark_output, manifests = idx_outputs
    for split in datasets.SPLITS:
        assert records(spark_output / split) == records(python / split)
        images, labels = ShardSet.open(str(python / split)).read_all()
        metadata = manifests[split].metadata
        assert metadata["class_counts"] == np.bincount(labels, minlength=10).tolist()
        assert metadata["pixel_mean"] == pytest.approx(images.mean(), abs=1e-5)
        assert metadata["pixel_std"] == pytest.approx(images.std(), abs=1e-5)
    assert datasets.dataset_class_names(str(spark_output)) == datasets.dataset_class_names(str(python))


def test_every_shard_but_the_last_is_full(idx_outputs):
    _, _, manifests = idx_outputs
    for manifest in manifests.values():
        sizes = [entry.records for entry in manifest.shards]
        assert sizes[:-1] == [SHARD_SIZE] * (len(sizes) - 1) and 0 < sizes[-1] <= SHARD_SIZE


def test_the_trainers_reader_opens_the_spark_output(idx_outputs):
    _, spark_output, _ = idx_outputs
    splits = datasets.check_splits(str(spark_output), ("train", "test"))
    batches = WorkerBatches(ShardSet.open(splits.train), global_batch_size=32, rank=1, world_size=2)
    seen = sum(len(batch.labels) for batch in batches.batches(0))
    assert seen == batches.steps_per_epoch * 16 and seen > 0


def test_an_unchanged_source_is_not_converted_again(spark, idx_outputs):
    _, spark_output, manifests = idx_outputs
    manifest_file = spark_output / "train" / MANIFEST_NAME
    before = manifest_file.stat().st_mtime_ns
    again = ingest(spark, spark_output.parent / "raw", spark_output)
    assert manifest_file.stat().st_mtime_ns == before and again["train"] == manifests["train"]


def synthetic_rows(count: int, seed: int = 2) -> list[tuple[bytes, int]]:
    images, labels = synthetic.generate(count, seed=seed)
    return [(image.tobytes(), int(label)) for image, label in zip(images, labels, strict=True)]


def test_parquet_duplicates_are_dropped_and_the_split_is_the_same_every_time(spark, tmp_path):
    unique = synthetic_rows(200)
    as_png = [
        (encode_image(np.frombuffer(image, np.uint8).reshape(28, 28)), label) for image, label in unique[:50]
    ]
    table = write_table(spark, tmp_path / "table", as_png + unique[50:] + unique[:30] + unique[120:140])
    first = ingest(spark, table, tmp_path / "first", test_fraction=0.25)
    second = ingest(spark, table, tmp_path / "second", test_fraction=0.25)
    assert {s: m.content_digest for s, m in first.items()} == {s: m.content_digest for s, m in second.items()}
    train, test = records(tmp_path / "first" / "train"), records(tmp_path / "first" / "test")
    assert sorted(train + test) == sorted(unique) and not set(train) & set(test)
    assert 0 < len(test) < len(train)
    assert first["train"].metadata["duplicates_dropped"] == 50


def test_a_parquet_split_column_is_kept(spark, tmp_path):
    rows = [
        (image, label, "test" if i % 4 == 0 else "train")
        for i, (image, label) in enumerate(synthetic_rows(80))
    ]
    pixels = [(list(image), label, split) for image, label, split in rows]  # images as arrays of ints
    table = write_table(spark, tmp_path / "table", pixels, "image array<int>, label int, split string")
    ingest(spark, table, tmp_path / "out")
    assert records(tmp_path / "out" / "test") == sorted(
        (image, label) for image, label, split in rows if split == "test"
    )
    assert records(tmp_path / "out" / "train") == sorted(
        (image, label) for image, label, split in rows if split == "train"
    )


def bad_tables() -> dict[str, tuple[list, str, str]]:
    """Per case: rows (the bad one at row 3), schema, what the error says."""
    good = synthetic_rows(6)

    def with_row_3(bad):
        return [*good[:3], bad, *good[3:]]

    return {
        "wrong image size": (
            with_row_3((bytes(100), 1)),
            "image binary, label int",
            "row 3: image holds 100 bytes",
        ),
        "label out of range": (
            with_row_3((good[0][0], 12)),
            "image binary, label int",
            "row 3: label 12 is outside",
        ),
        "corrupt png": (
            with_row_3((encode_image(np.zeros((28, 28), np.uint8))[:40], 1)),
            "image binary, label int",
            "row 3: image bytes are not a readable PNG",
        ),
        "png of the wrong size": (
            with_row_3((encode_image(np.zeros((20, 28), np.uint8)), 1)),
            "image binary, label int",
            "row 3: PNG is 28x20, expected 28x28",
        ),
        "missing column": (good, "picture binary, label int", "no column image"),
    }


@pytest.mark.parametrize("case", sorted(bad_tables()))
def test_bad_parquet_input_fails_naming_the_file_and_row_and_writes_nothing(spark, tmp_path, case):
    rows, schema, message = bad_tables()[case]
    table = write_table(spark, tmp_path / "table", rows, schema)
    with pytest.raises(DataError, match=message) as failure:
        ingest(spark, table, tmp_path / "out")
    assert str(tmp_path / "table") in str(failure.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_rejects_mode_sets_bad_rows_aside_and_counts_them(spark, tmp_path):
    good = synthetic_rows(40)
    bad = [(bytes(10), 1), (good[0][0], 99), (None, 3)]
    table = write_table(spark, tmp_path / "table", good[:20] + bad + good[20:])
    manifests = ingest(spark, table, tmp_path / "out", rejects=str(tmp_path / "rejects"))
    assert manifests["train"].records + manifests["test"].records == 40
    assert manifests["train"].metadata["rejected"] == 3
    rejected = spark.read.parquet(str(tmp_path / "rejects")).orderBy("row").collect()
    assert [row["row"] for row in rejected] == [20, 21, 22]
    assert [row["problem"].split()[0] for row in rejected] == ["image", "label", "image"]


def test_the_command_reports_a_bad_row_in_one_line_without_a_traceback(spark, tmp_path):
    rows, schema, message = bad_tables()["label out of range"]
    table = write_table(spark, tmp_path / "table", rows, schema)
    result = run_workloads(
        "ingest",
        "--engine",
        "spark",
        "--spark-master",
        MASTER,
        "--data",
        str(table),
        "--output",
        str(tmp_path / "out"),
        "--log-format",
        "text",
        timeout=300,
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert len([line for line in output.splitlines() if message in line]) == 1
    assert not (tmp_path / "out" / "train" / MANIFEST_NAME).exists()


def test_each_split_is_its_records_in_hash_order_cut_into_shards(spark, tmp_path):
    """The record hash Spark SQL computes is SHA-256 of the pixels and the label byte; an unsplit
    source's test split is the records whose hash starts below test_fraction * 2**64; each split's
    shards are its unique records in hash order, shard_size at a time."""
    unique = synthetic_rows(300, seed=3)
    table = write_table(spark, tmp_path / "table", unique + unique[:40])
    ingest(spark, table, tmp_path / "out", test_fraction=0.3)
    hashed = sorted(
        (hashlib.sha256(image + bytes((label,))).digest(), image, label) for image, label in unique
    )
    for split in datasets.SPLITS:
        expected = [
            (image, label)
            for key, image, label in hashed
            if (int.from_bytes(key[:8], "big") < 0.3 * 2**64) == (split == "test")
        ]
        shard_set = ShardSet.open(str(tmp_path / "out" / split))
        written = []
        for index in range(shard_set.num_shards):
            shard = shard_set.shard(index)
            written += [
                (image.tobytes(), int(label)) for image, label in zip(shard.images, shard.labels, strict=True)
            ]
        assert written == expected


def test_a_bad_spark_conf_pair_is_refused_in_one_line(tmp_path):
    result = run_workloads(
        "ingest", "--engine", "spark", "--data", str(tmp_path), "--output", str(tmp_path / "out"),
        "--spark-conf", "spark.sql.shuffle.partitions=4", "shuffle-partitions",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m workloads ingest: error: --spark-conf: each setting is KEY=VALUE with a spark.* key "
        "(e.g. spark.sql.shuffle.partitions=8), got 'shuffle-partitions'"
    ]


def test_spark_conf_settings_reach_the_session(spark):
    config = settings.resolve(
        ingest_command.Config,
        {"engine": "spark", "data": "d", "output": "o", "spark_conf": ["spark.sql.shuffle.partitions=3"]},
        {},
    )
    job_conf = spark_ingest.parse_conf(config.spark_conf)
    try:
        assert spark_ingest.session(MASTER, job_conf).conf.get("spark.sql.shuffle.partitions") == "3"
    finally:
        spark.conf.unset("spark.sql.shuffle.partitions")
