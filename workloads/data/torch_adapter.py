"""PyTorch side of the data layer: a worker's numpy batches as tensors, without a second data layer.

A DDP trainer builds :class:`workloads.data.sampling.WorkerBatches` with its rank and world size
(the DistributedSampler-equivalent: disjoint, equal-length, reshuffled each epoch from one seed) and
iterates this adapter. Whole batches come out of the memory-mapped shards with no per-sample Python
(unlike a ``Dataset.__getitem__`` per record and a collate): ``WorkerBatches`` takes each batch with
one numpy fancy-index gather, from the shard's memory map when a shuffle window lies in one shard,
else from the window's pieces concatenated once per window. Tensors share memory with that batch
(``torch.from_numpy``); images stay uint8 because scaling to [0, 1] belongs to the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from workloads.data.sampling import Batch


def torch_batches(batches: Iterable[Batch], device: Any = None) -> Iterator[tuple[Any, Any]]:
    """``(images uint8 [b, rows, cols], labels int64 [b])`` tensors, moved to ``device`` when given."""
    import torch

    for batch in batches:
        images = torch.from_numpy(batch.images)
        labels = torch.from_numpy(batch.labels).long()
        if device is not None:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
        yield images, labels
