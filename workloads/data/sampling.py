"""Sharding across workers, per-epoch shuffling and batching, framework-neutral (numpy batches).

Every worker builds the same *epoch order* from the seed: the shards in a permuted order (a new
permutation each epoch). With ``S = records // global_batch`` steps per epoch and ``b`` the
per-worker batch, worker ``r`` takes positions ``[r*S*b, (r+1)*S*b)`` of that order: a contiguous
block, so a worker reads about ``1/world_size`` of the shards each epoch (the sharding pattern: no
worker reads the whole dataset). The blocks are disjoint and together cover ``S * global_batch``
records; the remaining ``records mod global_batch`` records at the end of the epoch order are
**dropped** for that epoch (deterministically; a different tail each epoch because the order changes).
So every worker takes exactly ``S`` steps per epoch, which MultiWorkerMirroredStrategy and DDP need
(a worker with one step more would wait forever in an all-reduce).

Inside its block a worker shuffles records within windows of ``shuffle_window`` records (the whole
block when it fits, which is the default for Fashion-MNIST-sized data); the window bounds memory for
datasets larger than it, like tf.data's shuffle buffer over shuffled files. Batches are a pure function
of (seed, epoch, batch index, rank, world size), so a restarted worker resumes at any batch without
reading the ones before it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from workloads.core.errors import DataError
from workloads.data.shards import ShardSet

DEFAULT_SHUFFLE_WINDOW = 1 << 18  # records: 200 MB of 28x28 images


def uneven_split(global_batch_size: int, parts: int, what: str = "workers") -> str | None:
    """Why ``global_batch_size`` cannot be shared equally by ``parts`` replicas, or None when it can.

    Data-parallel training gives every replica the same share of each global batch, so the batch must
    be a multiple of the replicas; ``what`` names them in the message (workers, devices, a flag).
    """
    if global_batch_size % parts == 0:
        return None
    return f"the global batch size {global_batch_size} must be a multiple of the {parts} {what}"


@dataclasses.dataclass(frozen=True)
class Batch:
    """``images`` uint8 ``[b, rows, cols]``, ``labels`` uint8 ``[b]``, and where they are in the run."""

    images: np.ndarray
    labels: np.ndarray
    epoch: int
    index: int  # batch index inside the epoch; the data position checkpoints record


@dataclasses.dataclass(frozen=True)
class _Segment:
    shard: int
    start: int
    stop: int


@dataclasses.dataclass(frozen=True)
class Window:
    """One shuffle window and the batches to take from it: the plan that readers other than
    :meth:`WorkerBatches.batches` (TensorFlow's file readers) follow to yield the same batches.

    The window's records are its ``pieces`` (records ``start:stop`` of shard ``shard``) concatenated in
    order; the window's batch ``k`` is records ``order[k*b:(k+1)*b]`` of that concatenation, and it is
    batch ``first_batch + k`` of ``epoch``. Only the batches ``k`` in ``take`` belong to the steps asked
    for (a resumed run skips the first ones; the run's last step can end inside a window).
    """

    epoch: int
    first_batch: int
    pieces: tuple[_Segment, ...]
    order: np.ndarray
    take: range


class WorkerBatches:
    """The batches one worker trains on; see the module docstring for the sharding rule."""

    def __init__(
        self,
        data: ShardSet,
        *,
        global_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_window: int = DEFAULT_SHUFFLE_WINDOW,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} workers")
        if problem := uneven_split(global_batch_size, world_size):
            raise ValueError(problem)
        self.data = data
        self.global_batch_size = global_batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.per_worker_batch = global_batch_size // world_size
        self.steps_per_epoch = len(data) // global_batch_size
        if self.steps_per_epoch == 0:
            raise DataError(
                data.url,
                f"holds {len(data)} records, fewer than one global batch of {global_batch_size}; "
                "use a smaller --batch-size or more data",
            )
        self.dropped_per_epoch = len(data) - self.steps_per_epoch * global_batch_size
        self.block = self.steps_per_epoch * self.per_worker_batch
        window = max(shuffle_window, self.per_worker_batch) // self.per_worker_batch * self.per_worker_batch
        self.window = min(window, self.block)
        self.shuffle_window = shuffle_window  # the memory budget asked for, in records

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index) of a global step."""
        return divmod(step, self.steps_per_epoch)

    def shard_order(self, epoch: int) -> np.ndarray:
        """The epoch's shard permutation; identical on every worker."""
        if not self.shuffle:
            return np.arange(self.data.num_shards)
        return np.random.default_rng([self.seed, epoch]).permutation(self.data.num_shards)

    def _block_segments(self, epoch: int) -> list[_Segment]:
        """This worker's block as (shard, start, stop) pieces, in epoch order."""
        order = self.shard_order(epoch)
        sizes = np.diff(self.data.boundaries)[order]
        ends = np.cumsum(sizes)
        begin, end = self.rank * self.block, (self.rank + 1) * self.block
        segments = []
        for shard, size, stop in zip(order, sizes, ends, strict=True):
            start = stop - size
            lo, hi = max(begin, start), min(end, stop)
            if lo < hi:
                segments.append(_Segment(int(shard), int(lo - start), int(hi - start)))
            if stop >= end:
                break
        return segments

    def _window_plan(self, epoch: int, window: int) -> tuple[list[_Segment], np.ndarray]:
        """The segments making up one shuffle window and the order to take their records in."""
        begin = window * self.window
        length = min(self.window, self.block - begin)
        pieces, offset = [], 0
        for segment in self._block_segments(epoch):
            size = segment.stop - segment.start
            lo, hi = max(begin, offset), min(begin + length, offset + size)
            if lo < hi:
                pieces.append(
                    _Segment(segment.shard, segment.start + lo - offset, segment.start + hi - offset)
                )
            offset += size
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, self.rank, self.world_size, window])
            order = rng.permutation(length)
        else:
            order = np.arange(length)
        return pieces, order

    def _windows(self, epoch: int, start_batch: int) -> Iterator[tuple[int, list[_Segment], np.ndarray]]:
        first = start_batch * self.per_worker_batch // self.window
        count = -(-self.block // self.window)
        for window in range(first, count):
            pieces, order = self._window_plan(epoch, window)
            if window + 1 < count:
                self.data.prefetch([p.shard for p in self._window_plan(epoch, window + 1)[0]])
            yield window, pieces, order

    def record_ids(self, epoch: int) -> np.ndarray:
        """Dataset-wide record numbers in the order this worker sees them during ``epoch``."""
        ids = []
        for _, pieces, order in self._windows(epoch, 0):
            window_ids = np.concatenate(
                [self.data.boundaries[p.shard] + np.arange(p.start, p.stop) for p in pieces]
            )
            ids.append(window_ids[order])
        return np.concatenate(ids)

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """This worker's batches of ``epoch`` from batch ``start_batch`` on."""
        if not 0 <= start_batch <= self.steps_per_epoch:
            raise ValueError(f"start_batch {start_batch} is outside 0..{self.steps_per_epoch}")
        b = self.per_worker_batch
        for window, pieces, order in self._windows(epoch, start_batch):
            shards = [self.data.shard(p.shard) for p in pieces]
            if len(pieces) == 1:
                images = shards[0].images[pieces[0].start : pieces[0].stop]
                labels = shards[0].labels[pieces[0].start : pieces[0].stop]
            else:
                images = np.concatenate(
                    [s.images[p.start : p.stop] for s, p in zip(shards, pieces, strict=True)]
                )
                labels = np.concatenate(
                    [s.labels[p.start : p.stop] for s, p in zip(shards, pieces, strict=True)]
                )
            first_batch = window * self.window // b
            skip = max(0, start_batch - first_batch)
            for k in range(skip, len(order) // b):
                take = order[k * b : (k + 1) * b]
                yield Batch(images[take], labels[take], epoch, first_batch + k)

    def windows(self, start_step: int, end_step: int) -> Iterator[Window]:
        """The windows that global steps ``start_step .. end_step - 1`` read, each with the batches of it
        they take: :meth:`steps` as a plan, so a reader can skip to ``start_step`` without reading (or
        computing) the batches before it."""
        if start_step < 0:
            raise ValueError(f"start_step {start_step} is negative")
        b = self.per_worker_batch
        step = start_step
        while step < end_step:
            epoch, index = self.position(step)
            for window, pieces, order in self._windows(epoch, index):
                first_batch = window * self.window // b
                begin = max(0, index - first_batch)
                end = min(len(order) // b, begin + end_step - step)
                yield Window(epoch, first_batch, tuple(pieces), order, range(begin, end))
                step += end - begin
                if step >= end_step:
                    return

    def steps(self, start_step: int, end_step: int) -> Iterator[Batch]:
        """Batches for global steps ``start_step .. end_step - 1``, crossing epoch boundaries."""
        step = start_step
        while step < end_step:
            epoch, index = self.position(step)
            for batch in self.batches(epoch, index):
                yield batch
                step += 1
                if step >= end_step:
                    return


def sequential_batches(data: ShardSet, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every record once, in order, the last batch possibly smaller (evaluation)."""
    for index in range(data.num_shards):
        shard = data.shard(index)
        for start in range(0, len(shard.labels), batch_size):
            yield (
                np.asarray(shard.images[start : start + batch_size]),
                np.asarray(shard.labels[start : start + batch_size]),
            )
