"""Datasets on disk: a dataset directory holds one shard directory per split (``train/``, ``test/``).

``ingest_idx`` converts the canonical Fashion-MNIST IDX files (gzipped or not, any URL) and
``ingest_synthetic`` the generated stand-in. Both stream records into the shard writer, so memory
stays bounded by one shard, and both are memoised: a split whose manifest says it was completed from
the same source is left as it is (re-running the demo does not redo the work).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from workloads.core import logs, progress, storage
from workloads.core.errors import DataError
from workloads.data import idx, synthetic
from workloads.data.shards import MANIFEST_NAME, Manifest, ShardSet, ShardWriter

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NUM_CLASSES = len(synthetic.CLASS_NAMES)
SYNTHETIC_VERSION = 1  # bump when the generator's output changes, so memoised datasets are rebuilt


@dataclasses.dataclass(frozen=True)
class Splits:
    """Where a dataset's training and held-out shards are."""

    train: str
    test: str | None


def resolve_splits(url: str) -> Splits:
    """``url`` is a shard directory (training data only) or a dataset directory with ``train/``, ``test/``."""
    if storage.exists(storage.join(url, MANIFEST_NAME)):
        return Splits(train=url, test=None)
    train, test = storage.join(url, "train"), storage.join(url, "test")
    if storage.exists(storage.join(train, MANIFEST_NAME)):
        return Splits(train=train, test=test if storage.exists(storage.join(test, MANIFEST_NAME)) else None)
    raise DataError(
        url,
        f"neither a shard directory ({MANIFEST_NAME}) nor a dataset directory (train/{MANIFEST_NAME}); "
        "create one with `python -m workloads ingest --output URL`",
    )


def find_idx_files(source: str) -> dict[str, tuple[str, str]]:
    """The URLs of the four Fashion-MNIST files under ``source`` (``.gz`` or not)."""
    found: dict[str, tuple[str, str]] = {}
    for split, names in IDX_FILES.items():
        urls = []
        for name in names:
            candidates = [storage.join(source, name + suffix) for suffix in (".gz", "")]
            match = next((url for url in candidates if storage.exists(url)), None)
            if match is None:
                raise DataError(
                    source,
                    f"missing {name}[.gz]: expected the four Fashion-MNIST IDX files "
                    f"({', '.join(n for pair in IDX_FILES.values() for n in pair)}), gzipped or not",
                )
            urls.append(match)
        found[split] = (urls[0], urls[1])
    return found


def _idx_records(images_url: str, labels_url: str, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    with idx.IdxReader(images_url) as images, idx.IdxReader(labels_url) as labels:
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            bad = images if images.dtype != np.uint8 else labels
            raise DataError(
                bad.url, f"holds {bad.dtype} values; Fashion-MNIST images and labels are unsigned bytes", 2
            )
        if len(images.shape) != 3 or len(labels.shape) != 1:
            raise DataError(
                images_url,
                f"expected images [n, rows, cols] and labels [n], got {images.shape} and {labels.shape}",
            )
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                labels_url, f"holds {labels.shape[0]} labels but {images_url} holds {images.shape[0]} images"
            )
        header = 4 + 4 * len(labels.shape)
        while images.records_read < images.shape[0]:
            first = labels.records_read
            batch_labels = labels.read(chunk)
            bad = np.flatnonzero(batch_labels >= NUM_CLASSES)
            if bad.size:
                record = first + int(bad[0])
                raise DataError(
                    labels_url,
                    f"label {batch_labels[bad[0]]} of record {record} is outside 0..{NUM_CLASSES - 1}",
                    offset=header + record if not labels.compressed else None,
                )
            yield images.read(chunk), batch_labels


def _synthetic_records(count: int, seed: int, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    images, labels = synthetic.generate(count, seed=seed, split=split)
    yield images, labels


def _already_done(url: str, source: Mapping[str, Any]) -> Manifest | None:
    try:
        manifest = ShardSet.open(url).manifest
    except DataError:
        return None
    done = manifest.metadata.get("complete") and manifest.metadata.get("source") == dict(source)
    return manifest if done else None


def _write_split(
    url: str,
    records: Iterator[tuple[np.ndarray, np.ndarray]],
    *,
    total: int,
    image_shape: tuple[int, int],
    shard_size: int,
    source: Mapping[str, Any],
) -> Manifest:
    writer = ShardWriter(
        url,
        shard_size=shard_size,
        image_shape=image_shape,
        num_classes=NUM_CLASSES,
        metadata={"source": dict(source), "complete": False, "class_names": list(synthetic.CLASS_NAMES)},
        publish_each_commit=False,
        resume=False,
    )
    try:
        with progress.bar(total, f"shards {url}", unit="rec") as bar:
            for images, labels in records:
                writer.write(images, labels)
                bar.update(len(labels))
        writer.commit()
        writer.publish({"complete": True})
    except BaseException:
        writer.discard()  # nothing half-converted is left behind; a previous dataset stays as it was
        raise
    return writer.manifest


def ingest_idx(source: str, output: str, *, shard_size: int) -> dict[str, Manifest]:
    """Converts Fashion-MNIST IDX files under ``source`` into ``output/{train,test}`` shards."""
    files = find_idx_files(source)
    result = {}
    for split, (images_url, labels_url) in files.items():
        split_url = storage.join(output, split)
        description = {"kind": "idx", "images": images_url, "labels": labels_url}
        result[split] = _ingest_split(
            split_url,
            description,
            shard_size,
            lambda i=images_url, l=labels_url: _idx_records(i, l, shard_size),  # noqa: E741
            lambda i=images_url: _idx_header(i),
        )
    return result


def _idx_header(images_url: str) -> tuple[int, tuple[int, int]]:
    with idx.IdxReader(images_url) as reader:
        if len(reader.shape) != 3:
            raise DataError(images_url, f"expected images [n, rows, cols], the header says {reader.shape}", 3)
        return reader.shape[0], (reader.shape[1], reader.shape[2])


def ingest_synthetic(
    output: str, *, train_records: int, test_records: int, seed: int, shard_size: int
) -> dict[str, Manifest]:
    """Generates synthetic Fashion-MNIST into ``output/{train,test}`` shards."""
    result = {}
    for split, count in (("train", train_records), ("test", test_records)):
        description = {"kind": "synthetic", "version": SYNTHETIC_VERSION, "seed": seed, "records": count}
        result[split] = _ingest_split(
            storage.join(output, split),
            description,
            shard_size,
            lambda c=count, s=split: _synthetic_records(c, seed, s),
            lambda c=count: (c, (synthetic.SIZE, synthetic.SIZE)),
        )
    return result


def _ingest_split(url, description, shard_size, records, header) -> Manifest:
    description = {**description, "shard_size": shard_size}
    done = _already_done(url, description)
    if done is not None:
        log.info("shards already up to date", extra=logs.fields(url=url, records=done.records))
        return done
    total, image_shape = header()
    manifest = _write_split(
        url, records(), total=total, image_shape=image_shape, shard_size=shard_size, source=description
    )
    log.info(
        "wrote shards", extra=logs.fields(url=url, records=manifest.records, shards=len(manifest.shards))
    )
    return manifest
