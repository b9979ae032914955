"""Server-side request batching, following TF Serving's ``BatchingParameters``.

Concurrent requests for the same model version and signature (and the same per-example shape) are
concatenated along dimension 0 and run as one batch of at most ``max_batch_size`` rows; a batch
runs when it is full or ``batch_timeout_micros`` after its first request arrived, on one of
``num_batch_threads`` threads. Past ``max_enqueued_batches`` batches of queued work a request fails
fast with ``UNAVAILABLE`` (load shedding, as TF Serving does). With ``allowed_batch_sizes`` a batch is
padded up to the next allowed size so the model sees few distinct shapes.

Unlike TF Serving, a batch that fails with a client error (one bad image among good ones) is re-run
request by request, so only the request that caused the error gets it.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from workloads.serving.codes import Code, ServingStatus, invalid_argument
from workloads.serving.dev.savedmodel import LoadedModel, Signature
from workloads.serving.tfs_config import BatchingParameters

log = logging.getLogger(__name__)
Runner = Callable[[LoadedModel, Signature, Mapping[str, np.ndarray]], dict[str, np.ndarray]]


class _Task:
    __slots__ = ("enqueued", "future", "inputs", "key", "model", "rows", "signature")

    def __init__(self, model: LoadedModel, signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
        self.model = model
        self.signature = signature
        self.inputs = inputs
        self.rows = batch_rows(inputs)
        shapes = tuple(sorted((name, a.shape[1:], a.dtype.str) for name, a in inputs.items()))
        self.key = (id(model), signature.name, shapes)
        self.enqueued = time.monotonic()
        self.future: concurrent.futures.Future = concurrent.futures.Future()


def batch_rows(inputs: Mapping[str, np.ndarray]) -> int:
    """Rows of a request; every input must have a dimension 0 and agree on its size."""
    sizes = set()
    for name, array in inputs.items():
        if array.ndim == 0:
            raise invalid_argument(
                f"Batching Run() input tensors must have at least one dimension; input '{name}' is a scalar"
            )
        sizes.add(array.shape[0])
    if len(sizes) != 1:
        raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


class Batcher:
    """Call :meth:`submit` from request threads; it blocks until the request's rows are computed."""

    def __init__(self, params: BatchingParameters, run: Runner) -> None:
        self.params = params
        self._run = run
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"batch-{i}", daemon=True)
            for i in range(params.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, model: LoadedModel, signature: Signature, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        task = _Task(model, signature, inputs)
        limit = self.params.max_enqueued_batches * self.params.max_batch_size
        with self._cond:
            if self._stopped:
                raise ServingStatus(Code.UNAVAILABLE, "the server is shutting down")
            if self._queued_rows + task.rows > limit and self._queue:
                raise ServingStatus(
                    Code.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full "
                    f"({self._queued_rows} rows queued, max_enqueued_batches x max_batch_size = {limit})",
                )
            self._queue.append(task)
            self._queued_rows += task.rows
            self._cond.notify()
        return task.future.result()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> list[_Task] | None:
        timeout = self.params.batch_timeout_micros / 1e6
        with self._cond:
            while not self._queue:
                if self._stopped:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            deadline = first.enqueued + timeout
            while rows < self.params.max_batch_size:
                rows += self._take_matching(first.key, batch, self.params.max_batch_size - rows)
                remaining = deadline - time.monotonic()
                if rows >= self.params.max_batch_size or remaining <= 0 or self._stopped:
                    break
                self._cond.wait(remaining)
            self._queued_rows -= rows
            return batch

    def _take_matching(self, key: tuple, batch: list[_Task], room: int) -> int:
        """Moves queued tasks with ``key`` that fit in ``room`` rows into ``batch``; returns rows taken."""
        taken, kept = 0, collections.deque()
        while self._queue:
            task = self._queue.popleft()
            if task.key == key and task.rows <= room - taken:
                batch.append(task)
                taken += task.rows
            else:
                kept.append(task)
        self._queue = kept
        return taken

    def _execute(self, batch: list[_Task]) -> None:
        first = batch[0]
        try:
            merged = {name: np.concatenate([task.inputs[name] for task in batch]) for name in first.inputs}
            total = sum(task.rows for task in batch)
            padded = self._padded_size(total)
            if padded > total:
                merged = {
                    name: np.concatenate([a, np.repeat(a[-1:], padded - total, axis=0)])
                    for name, a in merged.items()
                }
            outputs = self._run(first.model, first.signature, merged)
            if any(np.ndim(a) == 0 or a.shape[0] != padded for a in outputs.values()):
                raise ServingStatus(
                    Code.INTERNAL,
                    "batched outputs do not keep the batch dimension; run without --enable-batching",
                )
        except ServingStatus as error:
            if len(batch) > 1 and error.code == Code.INVALID_ARGUMENT:
                for task in batch:  # find the request that caused it; the others still get answers
                    self._execute([task])
                return
            for task in batch:
                task.future.set_exception(error)
            return
        except Exception as error:  # a bug, not bad input: every waiting request must still get an answer
            log.exception("batch of %d requests failed", len(batch))
            for task in batch:
                task.future.set_exception(
                    ServingStatus(Code.INTERNAL, f"batch failed: {type(error).__name__}")
                )
            return
        offset = 0
        for task in batch:
            task.future.set_result({name: a[offset : offset + task.rows] for name, a in outputs.items()})
            offset += task.rows

    def _padded_size(self, rows: int) -> int:
        sizes = self.params.allowed_batch_sizes
        if not sizes or rows > sizes[-1]:
            return rows
        return sizes[bisect.bisect_left(sizes, rows)]
