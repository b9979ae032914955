"""TensorFlow side of the data layer: a worker's numpy batches as a ``tf.data.Dataset``.

The sharding, shuffling and batching happen in :mod:`workloads.data.sampling`; TensorFlow only
moves the finished uint8 batches (casting and scaling belong to the model) and prefetches them so
the next batch is ready while a step runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from workloads.data.sampling import Batch


def batches_dataset(
    make_batches: Callable[[], Iterator[Batch]], image_shape: tuple[int, int], per_worker_batch: int
):
    """``tf.data.Dataset`` of ``(images uint8 [b, rows, cols], labels uint8 [b])`` from a batch iterator."""
    import tensorflow as tf

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for batch in make_batches():
            yield batch.images, batch.labels

    signature = (
        tf.TensorSpec([per_worker_batch, *image_shape], tf.uint8),
        tf.TensorSpec([per_worker_batch], tf.uint8),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(tf.data.AUTOTUNE)
