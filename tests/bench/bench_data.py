"""Input pipeline throughput: the trainers' readers against the book's tf.data pipeline, same data, one run.

Reference (the book's batching/caching pattern): ``tf.data.Dataset.from_tensor_slices((images,
labels)).cache().shuffle(60000).batch(B)`` over the whole array in memory. Ours, each consumed the
way its trainer consumes it:

- the TensorFlow adapter (``tf_adapter.tf_batches``: TensorFlow's file readers over the shards),
  one dataset for the whole run, pulled step by step inside a ``tf.function`` like the reference;
- the PyTorch loader (``torch_adapter.torch_batches`` over ``WorkerBatches``), a Python loop over
  tensors, as the DDP trainer iterates it;
- the bare shard reader (``WorkerBatches.batches``), a Python loop over numpy batches;
- the hand-over the TensorFlow adapter used before (batches moved through ``from_generator``), for
  comparison.

Samples per second over full epochs, rounds interleaved so that the shared machine's load falls on
all of them alike; epoch 1 includes the reference's cache fill, our first read and checksum check of
every shard, and TensorFlow's tracing.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import statistics
import time

import numpy as np

RECORDS = 60_000
BATCH_SIZES = (64, 256)
EPOCHS = 4
ROUNDS = 3
PIPELINES = {
    "reference": "book's tf.data",
    "adapter": "TF adapter (file readers)",
    "torch": "PyTorch loader",
    "reader": "shard reader (numpy)",
    "generator": "before: from_generator hand-over",
}


def _tf_pipelines(tf, data, images, labels, batch: int) -> dict:
    """Per pipeline, a function consuming one epoch inside TensorFlow and returning its samples."""
    from workloads.data.sampling import WorkerBatches
    from workloads.data.tf_adapter import tf_batches

    batches = WorkerBatches(data, global_batch_size=batch, seed=0)
    steps = batches.steps_per_epoch
    total = EPOCHS * ROUNDS * steps

    @tf.function
    def pull(iterator, count):
        samples = tf.constant(0, tf.int64)
        for _ in tf.range(count):
            step_images, _ = next(iterator)
            samples += tf.cast(tf.shape(step_images)[0], tf.int64)
        return samples

    def handover():  # the adapter before: WorkerBatches in Python, 16 batches per from_generator element
        for epoch in range(EPOCHS * ROUNDS):
            group = list(batches.batches(epoch))
            for start in range(0, len(group), 16):
                chunk = group[start : start + 16]
                yield np.stack([b.images for b in chunk]), np.stack([b.labels for b in chunk])

    signature = (tf.TensorSpec([None, batch, 28, 28], tf.uint8), tf.TensorSpec([None, batch], tf.uint8))
    datasets = {
        "reference": tf.data.Dataset.from_tensor_slices((images, labels))
        .cache()
        .shuffle(RECORDS)
        .batch(batch)
        .repeat(),
        "adapter": tf_batches(batches, 0, total),
        "generator": tf.data.Dataset.from_generator(handover, output_signature=signature)
        .unbatch()
        .prefetch(-1),
    }
    count = tf.constant(steps)

    def epoch_of(dataset):
        iterator = iter(dataset)  # one iterator for the whole measurement, as a trainer keeps one
        return lambda: int(pull(iterator, count))

    return {name: epoch_of(dataset) for name, dataset in datasets.items()}


def _python_pipelines(data, batch: int) -> dict:
    from workloads.data.sampling import WorkerBatches
    from workloads.data.torch_adapter import torch_batches

    epochs = {"torch": 0, "reader": 0}
    batches = WorkerBatches(data, global_batch_size=batch, seed=0)

    def reader() -> int:
        epochs["reader"] += 1
        return sum(len(b.labels) for b in batches.batches(epochs["reader"] - 1))

    def torch() -> int:
        epochs["torch"] += 1
        return sum(len(labels) for _, labels in torch_batches(batches.batches(epochs["torch"] - 1)))

    return {"reader": reader, "torch": torch}


def _measure(pipelines: dict) -> dict[str, list[float]]:
    """Samples/s of every epoch of every pipeline: EPOCHS epochs each, ROUNDS rounds interleaved."""
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(ROUNDS):
        for name, epoch in pipelines.items():
            for _ in range(EPOCHS):
                began = time.perf_counter()
                samples = epoch()
                rates[name].append(samples / (time.perf_counter() - began))
    return rates


def run(workdir: pathlib.Path) -> str:
    import tensorflow as tf

    importlib.import_module("torch")  # imported before measuring: the import is not the loader's cost

    from workloads.data import datasets
    from workloads.data.shards import ShardSet

    datasets.ingest_synthetic(
        str(workdir / "data"), train_records=RECORDS, test_records=1000, seed=0, shard_size=4096
    )
    url = str(workdir / "data" / "train")
    images, labels = ShardSet.open(url).read_all()
    load = os.getloadavg()[0]
    rows = []
    for batch in BATCH_SIZES:
        pipelines = {
            **_tf_pipelines(tf, ShardSet.open(url), images, labels, batch),
            **_python_pipelines(ShardSet.open(url), batch),
        }
        rows.append((batch, _measure({name: pipelines[name] for name in PIPELINES})))
    return _report(rows, load)


def _report(rows: list, load: float) -> str:
    names = list(PIPELINES)
    header = (
        "| batch | "
        + " | ".join(f"{PIPELINES[n]}" + ("" if n == "reference" else " | ratio") for n in names)
        + " |"
    )
    lines = [
        "## Input pipeline: the trainers' readers vs the book's tf.data pipeline",
        "",
        f"Load average while measuring: {load:.1f} -> {os.getloadavg()[0]:.1f} (the machine is shared).",
        "",
        f"{RECORDS:,} synthetic 28x28 uint8 images and labels in shards of 4096, shuffled, one worker; samples "
        f"per second, median of the steady epochs (2-{EPOCHS} of each of {ROUNDS} interleaved rounds; the "
        "first epoch of the first round in brackets); ratio = steady rate / the reference's. Reference: "
        "`from_tensor_slices -> cache -> shuffle(60000) -> batch`; it, the TF adapter and the old hand-over "
        "are pulled one batch per step inside a `tf.function` (as the MWMS trainer's loop pulls its "
        "iterator); the PyTorch loader and the shard reader are iterated by a Python loop (as the DDP "
        "trainer iterates them).",
        "",
        header,
        "| ---: |" + " ---: |" * (2 * len(names) - 1),
    ]
    for batch, rates in rows:
        steady = {n: statistics.median(r for i, r in enumerate(rates[n]) if i % EPOCHS) for n in names}
        cells = [f"{steady['reference']:,.0f} ({rates['reference'][0]:,.0f})"]
        for n in names[1:]:
            cells += [f"{steady[n]:,.0f} ({rates[n][0]:,.0f})", f"{steady[n] / steady['reference']:.1f}x"]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Target: at least 5x the reference for the TF adapter and the PyTorch loader. The TF adapter plans "
        "each shuffle window in Python (which byte ranges of which shard files, in what order) and reads, "
        "decodes, shuffles and batches in TensorFlow's C++ ops; the old hand-over moved every batch "
        "through Python (`from_generator`).",
    ]
    return "\n".join(lines)
