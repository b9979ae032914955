"""TensorFlow side of the data layer: a worker's batches read by TensorFlow's own file readers.

The batches are exactly those of :meth:`workloads.data.sampling.WorkerBatches.steps` (the same
disjoint per-worker blocks, the same seeded order, the same resume point), but the records never pass
through Python. Python only plans, once per shuffle window (:meth:`WorkerBatches.windows`), which
records make up the window and in what order they are taken; TensorFlow reads the shard files with
``FixedLengthRecordDataset`` (a run of records of one shard is one fixed-length record of its file,
cut out by header and footer byte counts from the shard layout), decodes them with ``decode_raw``,
shuffles with one ``gather`` per window and hands out the batches by slicing. The hand-over this
replaces moved every batch through Python (``from_generator``) and was several times slower than the
shard reader.

Where a window's records come from:

- **resident**: when the whole dataset is no larger than the worker's shuffle window (the memory
  ``--shuffle-window`` already grants; Fashion-MNIST with the defaults), every shard is read once into
  memory and every window is gathered from there, as the book's pipeline caches its array;
- **windowed**: otherwise each window's pieces of shards are read when the window comes up, and the
  next window is read while the current one is consumed (about three windows in memory at a time).

Resuming at a global step skips inside the plan: windows before the step are neither planned nor read,
and the window holding it is sliced from the step's batch on.

Checksums: every shard file is checked against the manifest (size, header, SHA-256;
:meth:`ShardSet.checked_file`, once per file per :class:`ShardSet`) before TensorFlow opens it. A
resident dataset is checked whole when the dataset is built, so a corrupt shard raises the shard
layer's :class:`DataError` naming the file right there. A windowed dataset checks the shards of a
window when that window is planned, inside the input pipeline: TensorFlow reports the failure as its
own error carrying the same message, and ``on_failure`` receives the original exception first (a
trainer raises that one instead).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from workloads.data.sampling import Window, WorkerBatches
from workloads.data.shards import HEADER_SIZE, ShardSet

Piece = tuple[int, int, int]  # records start:stop of one shard: (shard, start, stop)


def _cuts(data: ShardSet, pieces: Sequence[Piece]) -> dict[str, np.ndarray]:
    """Files and (header, record, footer) byte counts that make each piece one record of its file.

    The shards are checked before their names are handed out. ``longest`` is the most records in a
    piece: TensorFlow decodes the pieces into rows ``[pieces * longest]``, each piece padded to
    ``longest`` with zeros (piece ``i`` begins at row ``i * longest``).
    """
    pixels = int(np.prod(data.manifest.image_shape))
    longest = max(stop - start for _, start, stop in pieces)
    if longest * pixels >= 2**31:  # decode_raw's fixed_length is an int32
        raise ValueError(f"{data.url}: shards of {longest} records are too large to read (at most 2 GiB)")
    files, images, labels = [], [], []
    for shard, start, stop in pieces:
        files.append(str(data.checked_file(shard)))
        records = data.manifest.shards[shard].records
        count, rest = stop - start, records - stop
        images.append((HEADER_SIZE + start * pixels, count * pixels, rest * pixels + records))
        labels.append((HEADER_SIZE + records * pixels + start, count, rest))
    return {
        "files": np.array(files),
        "images": np.array(images, np.int64),
        "labels": np.array(labels, np.int64),
        "longest": np.int32(longest),
    }


def _rows(window: Window, batch: int, first_rows: np.ndarray) -> np.ndarray:
    """The window's taken records in batch order, as rows of a decoded array in which the window's
    piece ``i`` begins at row ``first_rows[i]``."""
    sizes = np.array([p.stop - p.start for p in window.pieces], np.int64)
    ends = np.cumsum(sizes)
    taken = window.order[window.take.start * batch : window.take.stop * batch].astype(np.int64)
    piece = np.searchsorted(ends, taken, side="right")
    return taken - (ends - sizes)[piece] + first_rows[piece]


def tf_batches(
    batches: WorkerBatches,
    start_step: int,
    end_step: int,
    *,
    split: int = 1,
    on_failure: Callable[[BaseException], None] | None = None,
):
    """``tf.data.Dataset`` of ``(images uint8 [b, rows, cols], labels uint8 [b])``: this worker's
    batches for global steps ``start_step .. end_step - 1``, equal to ``batches.steps(...)``.

    With ``split`` > 1 (a worker with several devices) each batch becomes ``split`` consecutive
    elements of ``per_worker_batch / split`` records, one per local replica. Casting and scaling
    belong to the model, so images stay uint8.
    """
    import tensorflow as tf

    if batches.per_worker_batch % split:
        raise ValueError(
            f"a worker batch of {batches.per_worker_batch} does not split into {split} equal parts"
        )
    windows = (_resident if len(batches.data) <= batches.shuffle_window else _windowed)(
        tf, batches, start_step, end_step, _guarded(on_failure)
    )
    element = batches.per_worker_batch // split
    shape = tuple(batches.data.manifest.image_shape)

    def shuffled(images, labels, rows):  # the window's batches in one gather, read ahead by one window
        return (
            tf.reshape(tf.gather(images, rows), [-1, element, *shape]),
            tf.reshape(tf.gather(labels, rows), [-1, element]),
        )

    def slices(images, labels):
        return tf.data.Dataset.from_tensor_slices((images, labels))

    return windows.map(shuffled).prefetch(1).flat_map(slices).prefetch(tf.data.AUTOTUNE)


def _resident(tf, batches: WorkerBatches, start_step: int, end_step: int, guard: Callable):
    """(images, labels, rows) per window, gathered from every shard read once and kept in memory."""
    data = batches.data
    everything = _cuts(data, [(i, 0, entry.records) for i, entry in enumerate(data.manifest.shards)])
    longest = int(everything["longest"])

    def plans():
        for window in batches.windows(start_step, end_step):
            first_rows = np.array([p.shard * longest + p.start for p in window.pieces], np.int64)
            yield _rows(window, batches.per_worker_batch, first_rows)

    rows = tf.data.Dataset.from_generator(guard(plans), output_signature=tf.TensorSpec([None], tf.int64))
    shards = tf.data.Dataset.from_tensors(everything).map(lambda cuts: _read(tf, data, cuts)).cache()
    return tf.data.Dataset.zip(shards.repeat(), rows).map(lambda shard, row: (*shard, row))


def _windowed(tf, batches: WorkerBatches, start_step: int, end_step: int, guard: Callable):
    """(images, labels, rows) per window, its pieces of shards read when it comes up."""
    data = batches.data

    def plans():
        for window in batches.windows(start_step, end_step):
            cuts = _cuts(data, [(p.shard, p.start, p.stop) for p in window.pieces])
            first_rows = np.arange(len(window.pieces), dtype=np.int64) * int(cuts["longest"])
            yield {**cuts, "rows": _rows(window, batches.per_worker_batch, first_rows)}

    signature = {
        "files": tf.TensorSpec([None], tf.string),
        "images": tf.TensorSpec([None, 3], tf.int64),
        "labels": tf.TensorSpec([None, 3], tf.int64),
        "longest": tf.TensorSpec([], tf.int32),
        "rows": tf.TensorSpec([None], tf.int64),
    }
    plan = tf.data.Dataset.from_generator(guard(plans), output_signature=signature)
    return plan.map(lambda cuts: (*_read(tf, data, cuts), cuts["rows"]))


def _read(tf, data: ShardSet, cuts: dict):
    """The pieces of ``cuts`` as images ``[pieces * longest, rows, cols]`` and labels, in TensorFlow."""
    shape = tuple(data.manifest.image_shape)

    def decode(part: str, length):
        pieces = tf.data.Dataset.from_tensor_slices((cuts["files"], cuts[part])).flat_map(
            lambda file, cut: tf.data.FixedLengthRecordDataset(file, cut[1], cut[0], cut[2])
        )
        strings = pieces.batch(tf.size(cuts["files"], out_type=tf.int64)).get_single_element()
        return tf.io.decode_raw(strings, tf.uint8, fixed_length=length)

    pixels = int(np.prod(shape))
    images = tf.reshape(decode("images", cuts["longest"] * pixels), [-1, *shape])
    return images, tf.reshape(decode("labels", cuts["longest"]), [-1])


def _guarded(on_failure: Callable[[BaseException], None] | None) -> Callable:
    """Wraps a plan generator so that its failure reaches ``on_failure`` before TensorFlow's error."""

    def guard(plans: Callable) -> Callable:
        def generate():
            try:
                yield from plans()
            except Exception as error:  # TensorFlow reports it as its own error, with this message
                if on_failure is not None:
                    on_failure(error)
                raise

        return generate

    return guard
