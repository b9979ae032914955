"""TensorFlow side of the data layer: a worker's numpy batches as a ``tf.data.Dataset``.

The sharding, shuffling and batching happen in :mod:`workloads.data.sampling`; TensorFlow only
moves the finished uint8 batches (casting and scaling belong to the model) and prefetches them so
the next batch is ready while a step runs. Python hands over several batches at a time, stacked,
and ``unbatch`` splits them inside TensorFlow: the per-element cost of ``from_generator`` is paid
once per group instead of once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from workloads.data.sampling import Batch

BATCHES_PER_HANDOVER = 16


def _stacked(batches: Iterator[Batch], group: int, split: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for batch in batches:
        images.extend(np.split(batch.images, split))
        labels.extend(np.split(batch.labels, split))
        if len(images) >= group:
            yield np.stack(images), np.stack(labels)
            images, labels = [], []
    if images:
        yield np.stack(images), np.stack(labels)


def batches_dataset(
    make_batches: Callable[[], Iterator[Batch]],
    image_shape: tuple[int, int],
    per_worker_batch: int,
    split: int = 1,
):
    """``tf.data.Dataset`` of ``(images uint8 [b, rows, cols], labels uint8 [b])`` from a batch iterator.

    With ``split`` > 1 (a worker with several devices) each batch becomes ``split`` consecutive
    elements of ``per_worker_batch / split`` records, one per local replica.
    """
    import tensorflow as tf

    if per_worker_batch % split:
        raise ValueError(f"a worker batch of {per_worker_batch} does not split into {split} equal parts")
    element = per_worker_batch // split
    signature = (
        tf.TensorSpec([None, element, *image_shape], tf.uint8),
        tf.TensorSpec([None, element], tf.uint8),
    )
    stacked = tf.data.Dataset.from_generator(
        lambda: _stacked(make_batches(), BATCHES_PER_HANDOVER * split, split), output_signature=signature
    )
    return stacked.unbatch().prefetch(tf.data.AUTOTUNE)
