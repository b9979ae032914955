"""Predictions from an exported SavedModel, through its serving signatures, with accuracy.

This is what a client of TF Serving gets: the held-out images go in raw (0-255 float32) through
``serving_default``; a sample also goes in as PNG bytes through ``serving_bytes``, and both must
give the same classes.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from workloads.data.sampling import sequential_batches
from workloads.data.shards import ShardSet
from workloads.serving.client import BYTES_SIGNATURE, DEFAULT_SIGNATURE
from workloads.workflow.export import encode_png
from workloads.workflow.selection import classification_metrics

BATCH = 1000


def predict_with_saved_model(
    saved_model_dir: pathlib.Path | str, data: ShardSet, bytes_sample: int = 64
) -> dict[str, Any]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    tensors, encoded = loaded.signatures[DEFAULT_SIGNATURE], loaded.signatures[BYTES_SIGNATURE]
    labels, predicted = [], []
    for images, batch_labels in sequential_batches(data, BATCH):
        out = tensors(images=tf.constant(images.astype(np.float32)))
        predicted.append(out["class_ids"].numpy())
        labels.append(batch_labels)
    labels_all, predicted_all = np.concatenate(labels), np.concatenate(predicted)
    sample_images, _ = (
        data.read_all()
        if len(data) <= bytes_sample
        else (np.asarray(data.shard(0).images[:bytes_sample]), None)
    )
    sample_images = sample_images[:bytes_sample]
    from_bytes = encoded(image_bytes=tf.constant([encode_png(i) for i in sample_images]))["class_ids"].numpy()
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (labels_all, predicted_all), 1)
    return {
        "saved_model": str(saved_model_dir),
        "records": len(labels_all),
        **classification_metrics(labels_all, predicted_all),
        "bytes_signature_agrees": bool(np.array_equal(from_bytes, predicted_all[: len(from_bytes)])),
        "bytes_sample": len(from_bytes),
        "confusion_matrix": confusion.tolist(),
    }
