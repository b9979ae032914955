"""The TensorFlow hand-over of worker batches: same records, same order, split per local replica."""

import numpy as np
import pytest

from workloads.data.sampling import Batch

pytestmark = pytest.mark.slow


def batches(count, size):
    for index in range(count):
        images = np.full((size, 28, 28), index, np.uint8)
        yield Batch(images, np.arange(size, dtype=np.uint8), epoch=0, index=index)


@pytest.mark.parametrize("count", [1, 16, 37])
def test_the_dataset_yields_every_batch_in_order(count):
    from workloads.data.tf_adapter import batches_dataset

    got = [(x.numpy(), y.numpy()) for x, y in batches_dataset(lambda: batches(count, 8), (28, 28), 8)]
    assert len(got) == count
    for index, (images, labels) in enumerate(got):
        assert images.shape == (8, 28, 28) and (images == index).all() and (labels == np.arange(8)).all()


def test_a_worker_with_several_devices_gets_one_per_replica_piece_per_element():
    from workloads.data.tf_adapter import batches_dataset

    got = [y.numpy() for _, y in batches_dataset(lambda: batches(3, 8), (28, 28), 8, split=2)]
    assert len(got) == 6
    assert [list(y) for y in got[:2]] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_the_torch_adapter_shares_memory_and_widens_labels():
    from workloads.data.torch_adapter import torch_batches

    (images, labels), *_ = list(torch_batches(batches(2, 4)))
    assert str(images.dtype) == "torch.uint8" and tuple(images.shape) == (4, 28, 28)
    assert str(labels.dtype) == "torch.int64" and labels.tolist() == [0, 1, 2, 3]
