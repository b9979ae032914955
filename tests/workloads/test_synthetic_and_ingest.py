"""The synthetic stand-in for Fashion-MNIST and the conversion of IDX files into shards."""

import numpy as np
import pytest

from tests.workloads.support import json_lines, run_workloads
from workloads.core.errors import DataError
from workloads.data import datasets, idx, synthetic
from workloads.data.shards import ShardSet


def test_synthetic_data_is_deterministic_and_fashion_mnist_shaped():
    images, labels = synthetic.generate(500, seed=3)
    again, again_labels = synthetic.generate(500, seed=3)
    assert images.shape == (500, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    assert np.bincount(labels, minlength=10).tolist() == [50] * 10
    test_images, _ = synthetic.generate(500, seed=3, split="test")
    assert not np.array_equal(images, test_images)


def test_synthetic_classes_need_a_model_to_learn_them():
    """Learnable from many pixels (nearest class mean well above chance), not from any single pixel."""
    train, train_labels = synthetic.generate(4000, seed=0)
    test, test_labels = synthetic.generate(1000, seed=0, split="test")
    flat = train.reshape(len(train), -1).astype(np.float32)
    centroids = np.stack([flat[train_labels == c].mean(0) for c in range(10)])
    distances = ((test.reshape(len(test), -1)[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert (distances.argmin(1) == test_labels).mean() > 0.5
    best_single_pixel = 0.0
    binned = flat.astype(np.int64) // 16
    for pixel in range(flat.shape[1]):
        table = np.zeros((16, 10))
        np.add.at(table, (binned[:, pixel], train_labels), 1)
        best_single_pixel = max(best_single_pixel, table.max(1).sum() / len(train))
    assert best_single_pixel < 0.35


def write_fashion_mnist(directory, train=120, test=40, compress=True):
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for split, count in (("train", train), ("test", test)):
        images, labels = synthetic.generate(count, seed=1, split=split)
        image_name, label_name = datasets.IDX_FILES[split]
        idx.write_idx(directory / (image_name + suffix), images, compress=compress)
        idx.write_idx(directory / (label_name + suffix), labels, compress=compress)
    return directory


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_become_train_and_test_shards(tmp_path, compress):
    source = write_fashion_mnist(tmp_path / "raw", compress=compress)
    result = datasets.ingest_idx(str(source), str(tmp_path / "shards"), shard_size=50)
    assert result["train"].records == 120 and result["test"].records == 40
    splits = datasets.resolve_splits(str(tmp_path / "shards"))
    images, labels = ShardSet.open(splits.train).read_all()
    expected, expected_labels = synthetic.generate(120, seed=1, split="train")
    assert np.array_equal(images, expected) and np.array_equal(labels, expected_labels)


def test_ingest_is_memoised_and_redone_when_the_source_changes(tmp_path):
    out = str(tmp_path / "shards")
    datasets.ingest_synthetic(out, train_records=100, test_records=20, seed=0, shard_size=64)
    manifest = tmp_path / "shards" / "train" / "manifest.json"
    first = manifest.stat().st_mtime_ns
    datasets.ingest_synthetic(out, train_records=100, test_records=20, seed=0, shard_size=64)
    assert manifest.stat().st_mtime_ns == first
    datasets.ingest_synthetic(out, train_records=100, test_records=20, seed=1, shard_size=64)
    assert manifest.stat().st_mtime_ns != first


def test_a_label_outside_the_classes_names_the_file_and_offset(tmp_path):
    source = write_fashion_mnist(tmp_path / "raw", compress=False)
    labels_file = source / "train-labels-idx1-ubyte"
    data = bytearray(labels_file.read_bytes())
    data[8 + 17] = 42
    labels_file.write_bytes(bytes(data))
    with pytest.raises(DataError, match="label 42 of record 17") as caught:
        datasets.ingest_idx(str(source), str(tmp_path / "shards"), shard_size=50)
    assert caught.value.offset == 8 + 17
    assert not (tmp_path / "shards" / "train" / "manifest.json").exists()


def test_image_and_label_counts_must_agree(tmp_path):
    source = write_fashion_mnist(tmp_path / "raw", compress=False)
    idx.write_idx(source / "train-labels-idx1-ubyte", np.zeros(119, np.uint8))
    with pytest.raises(DataError, match="119 labels"):
        datasets.ingest_idx(str(source), str(tmp_path / "shards"), shard_size=50)


def test_a_truncated_idx_file_fails_the_ingest_and_leaves_no_dataset(tmp_path):
    source = write_fashion_mnist(tmp_path / "raw", compress=False)
    images_file = source / "train-images-idx3-ubyte"
    images_file.write_bytes(images_file.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as caught:
        datasets.ingest_idx(str(source), str(tmp_path / "shards"), shard_size=50)
    assert caught.value.path == str(images_file)
    assert not list((tmp_path / "shards" / "train").iterdir())


def test_the_ingest_command_reports_a_corrupt_file_in_one_line_and_exits_1(tmp_path):
    source = write_fashion_mnist(tmp_path / "raw", compress=True)
    labels_file = source / "t10k-labels-idx1-ubyte.gz"
    labels_file.write_bytes(labels_file.read_bytes()[:30])
    result = run_workloads(
        "ingest", "--output", str(tmp_path / "shards"), "--data", str(source), "--shard-size", "50"
    )
    assert result.returncode == 1
    errors = [r["msg"] for r in json_lines(result.stderr) if r["level"] == "error"]
    assert len(errors) == 1 and str(labels_file) in errors[0] and "at byte 30" in errors[0]
    assert not (tmp_path / "shards" / "test" / "manifest.json").exists()


def test_missing_idx_files_are_listed(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        datasets.ingest_idx(str(tmp_path / "raw"), str(tmp_path / "shards"), shard_size=50)


def test_a_directory_that_is_no_dataset_says_what_it_expected(tmp_path):
    with pytest.raises(DataError, match=r"train/manifest\.json"):
        datasets.resolve_splits(str(tmp_path))


def test_idx_files_on_s3_are_ingested(tmp_path, s3_bucket):
    import fsspec

    source = write_fashion_mnist(tmp_path / "raw")
    fs = fsspec.filesystem("s3")
    for path in source.iterdir():
        fs.put_file(str(path), f"{s3_bucket}/raw/{path.name}")
    result = datasets.ingest_idx(f"s3://{s3_bucket}/raw", f"s3://{s3_bucket}/shards", shard_size=64)
    assert result["train"].records == 120
