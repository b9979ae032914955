"""The trainers' readers yield exactly WorkerBatches' batches, and a corrupt shard stops them naming it.

The TensorFlow adapter reads the shard files with TensorFlow's own readers (resident: every shard
read once; windowed: each shuffle window's pieces when it comes up), the PyTorch loader wraps the
numpy batches; both must give, batch for batch and element for element, what ``WorkerBatches.steps``
gives for the same seed, worker and start step.
"""

import shutil

import numpy as np
import pytest

from workloads.core.errors import DataError
from workloads.data import datasets
from workloads.data.sampling import WorkerBatches
from workloads.data.shards import ShardSet

pytestmark = pytest.mark.slow  # TensorFlow's import and tracing take seconds

RECORDS = 1000  # 15 shards of 64 and one of 40: an uneven last shard, and a remainder dropped per epoch
BIG_WINDOW = 1 << 18  # the dataset fits: the TF adapter keeps it resident
CASES = {
    # id: (global batch, rank, world size, start step, steps, shuffle window, replicas per worker)
    "one-worker-two-epochs-resident": (32, 0, 1, 0, 62, BIG_WINDOW, 1),
    "resumed-mid-epoch-across-the-epoch-end-resident": (40, 1, 2, 20, 9, BIG_WINDOW, 2),
    "three-workers-resumed-mid-window-windowed": (30, 2, 3, 7, 40, 100, 1),
    "ends-inside-a-window-windowed": (48, 0, 2, 5, 4, 50, 3),
    "last-step-of-an-epoch-windowed": (64, 1, 2, 14, 1, 64, 2),
}


@pytest.fixture(scope="module")
def data_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("native")
    datasets.ingest_synthetic(str(root), train_records=RECORDS, test_records=64, seed=3, shard_size=64)
    return str(root / "train")


def worker(url, batch, rank, world, window, seed=11, **kwargs):
    return WorkerBatches(
        ShardSet.open(url),
        global_batch_size=batch,
        rank=rank,
        world_size=world,
        seed=seed,
        shuffle_window=window,
        **kwargs,
    )


def expected(batches, start, steps):
    reference = list(batches.steps(start, start + steps))
    assert len(reference) == steps
    return reference


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_tf_adapter_yields_exactly_the_worker_batches(data_url, case):
    from workloads.data.tf_adapter import tf_batches

    batch, rank, world, start, steps, window, split = case
    batches = worker(data_url, batch, rank, world, window)
    got = list(tf_batches(batches, start, start + steps, split=split).as_numpy_iterator())
    reference = expected(worker(data_url, batch, rank, world, window), start, steps)
    assert len(got) == steps * split
    for index, want in enumerate(reference):
        pieces = got[index * split : (index + 1) * split]
        assert all(len(labels) == batch // world // split for _, labels in pieces)
        np.testing.assert_array_equal(np.concatenate([images for images, _ in pieces]), want.images)
        np.testing.assert_array_equal(np.concatenate([labels for _, labels in pieces]), want.labels)


def test_the_tf_adapter_follows_an_unshuffled_order_and_other_seeds(data_url):
    from workloads.data.tf_adapter import tf_batches

    for kwargs in ({"shuffle": False}, {"seed": 12}):
        batches = worker(data_url, 50, 0, 2, BIG_WINDOW, **kwargs)
        got = [labels for _, labels in tf_batches(batches, 3, 25).as_numpy_iterator()]
        want = [b.labels for b in worker(data_url, 50, 0, 2, BIG_WINDOW, **kwargs).steps(3, 25)]
        np.testing.assert_array_equal(np.stack(got), np.stack(want))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_torch_loader_yields_exactly_the_worker_batches(data_url, case):
    from workloads.data.torch_adapter import torch_batches

    batch, rank, world, start, steps, window, _ = case
    batches = worker(data_url, batch, rank, world, window)
    reference = expected(worker(data_url, batch, rank, world, window), start, steps)
    got = list(torch_batches(batches.steps(start, start + steps)))
    assert len(got) == steps
    for (images, labels), want in zip(got, reference, strict=True):
        assert str(images.dtype) == "torch.uint8" and str(labels.dtype) == "torch.int64"
        np.testing.assert_array_equal(images.numpy(), want.images)
        np.testing.assert_array_equal(labels.numpy(), want.labels)


@pytest.fixture
def corrupt_url(data_url, tmp_path):
    """A copy of the dataset whose shard 2 has one flipped byte among its images."""
    copy = tmp_path / "train"
    shutil.copytree(data_url, copy)
    shard = sorted(copy.glob("shard-*.bin"))[2]
    content = bytearray(shard.read_bytes())
    content[1000] ^= 0xFF
    shard.write_bytes(bytes(content))
    return str(copy), shard.name


def test_a_resident_tf_dataset_with_a_corrupt_shard_fails_when_built_naming_it(corrupt_url):
    from workloads.data.tf_adapter import tf_batches

    url, name = corrupt_url
    with pytest.raises(DataError, match=f"{name} at byte 0: content does not match its checksum"):
        tf_batches(worker(url, 32, 0, 1, BIG_WINDOW), 0, 10)


def test_a_windowed_tf_dataset_with_a_corrupt_shard_fails_before_reading_it_naming_it(corrupt_url):
    import tensorflow as tf

    from workloads.data.tf_adapter import tf_batches

    url, name = corrupt_url
    failures = []
    batches = worker(url, 32, 0, 1, 64)
    with pytest.raises(tf.errors.OpError, match=f"{name} at byte 0: content does not match its checksum"):
        for _ in tf_batches(batches, 0, batches.steps_per_epoch, on_failure=failures.append):
            pass
    assert [type(error) for error in failures] == [DataError] and name in str(failures[0])


def test_the_torch_loader_over_a_corrupt_shard_fails_naming_it(corrupt_url):
    from workloads.data.torch_adapter import torch_batches

    url, name = corrupt_url
    batches = worker(url, 32, 0, 1, BIG_WINDOW)
    with pytest.raises(DataError, match=f"{name} at byte 0: content does not match its checksum"):
        list(torch_batches(batches.batches(0)))


def test_a_worker_batch_that_does_not_split_across_its_replicas_is_refused(data_url):
    from workloads.data.tf_adapter import tf_batches

    with pytest.raises(ValueError, match="a worker batch of 32 does not split into 3 equal parts"):
        tf_batches(worker(data_url, 32, 0, 1, BIG_WINDOW), 0, 1, split=3)
