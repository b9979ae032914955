"""Datasets on disk: a dataset directory holds one shard directory per split (``train/``, ``test/``).

``ingest_idx`` converts IDX files in the layout of Fashion-MNIST (gzipped or not, any URL) and
``ingest_synthetic`` the generated stand-in. Both stream records into the shard writer, so memory
stays bounded by one shard, and both are memoised: a split whose manifest says it was completed from
the same source with the same class names is left as it is (re-running the demo does not redo the work).

Class names belong to the dataset: each split's manifest carries them (metadata ``class_names``, one
per class id) and :func:`class_names` is the one place that reads them. They come from the caller
(``ingest --class-names``); without that, synthetic data and the canonical Fashion-MNIST release
(recognised by its label files' content, :func:`is_fashion_mnist`) get Fashion-MNIST's names, and any
other IDX data gets its label numbers, ``"0"`` .. ``"9"``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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
FASHION_MNIST_CLASS_NAMES = synthetic.CLASS_NAMES  # the stand-in draws Fashion-MNIST's classes, in order
# MD5 of the decompressed label files of the Fashion-MNIST release (zalandoresearch/fashion-mnist,
# data/fashion/), whose gzipped files have the MD5s its README publishes: train-labels-idx1-ubyte.gz
# 25c81989df183df01b3e8a0aad5dffbe, t10k-labels-idx1-ubyte.gz bb300cfdad3c16e7a12a480ee83cd310. The
# content digest recognises a copy gzipped or not (and re-gzipped). The labels are what the names
# name, so the label files alone decide; the 30 MB of images are not read twice for it.
FASHION_MNIST_LABEL_MD5 = {
    "train": "9018921c3c673c538a1fc5bad174d6f9",
    "test": "15d484375f8d13e6eb1aabb0c3f46965",
}


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


def check_splits(url: str, needed: Sequence[str] = ("train",)) -> Splits:
    """The splits of ``url``, checked before work fans out over them (``search``, ``pipeline``).

    The storage must answer (else :class:`~workloads.core.errors.StorageError`) and every split in
    ``needed`` must have a readable manifest listing at least one record (else :class:`DataError`), so
    a bad ``--data`` fails once, here, instead of once per trial.
    """
    splits = resolve_splits(url)
    found = {"train": splits.train, "test": splits.test}
    for split in needed:
        where = found[split]
        if where is None:
            raise DataError(
                url,
                f"has no {split}/ split ({split}/{MANIFEST_NAME}); give a dataset directory with train/ and "
                f"{split}/, as `python -m workloads ingest --output URL` writes",
            )
        if ShardSet.open(where).manifest.records == 0:
            raise DataError(where, f"the {split} split holds no records; ingest data into it first")
    return splits


def class_names_problem(names: Sequence[str]) -> str | None:
    """Why ``names`` cannot name the classes (one per class id, unique, non-empty), or None; () = not given."""
    if not names:
        return None
    if len(names) != NUM_CLASSES:
        return f"give exactly {NUM_CLASSES} names, one per class id 0..{NUM_CLASSES - 1}, got {len(names)}"
    if any(not isinstance(name, str) or not name.strip() for name in names):
        return "names must not be empty"
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        return f"names must be unique; repeated: {', '.join(repeated)}"
    return None


def numbered_class_names(num_classes: int = NUM_CLASSES) -> tuple[str, ...]:
    """The names of classes nobody named: their label numbers."""
    return tuple(str(i) for i in range(num_classes))


def class_names(manifest: Manifest) -> tuple[str, ...]:
    """The dataset's class names, index = class id: the manifest's ``class_names``; a manifest without
    them (written by the streaming ingester, or before they were recorded) gets Fashion-MNIST's names
    when its source is the synthetic stand-in, and the label numbers otherwise."""
    names = manifest.metadata.get("class_names")
    if isinstance(names, list) and len(names) == manifest.num_classes and class_names_problem(names) is None:
        return tuple(names)
    source = manifest.metadata.get("source")
    if isinstance(source, dict) and source.get("kind") == "synthetic" and manifest.num_classes == NUM_CLASSES:
        return FASHION_MNIST_CLASS_NAMES
    return numbered_class_names(manifest.num_classes)


def dataset_digest(manifests: Mapping[str, Manifest], length: int = 20) -> str:
    """A short hex digest of a dataset's records: over each split's :meth:`Manifest.content_digest`,
    by split name. The same records give the same digest however often they are ingested; any changed
    record, or a split added or removed, changes it. Metadata (sources, class names) is left out."""
    digest = hashlib.sha256()
    for split in sorted(manifests):
        digest.update(f"{split} {manifests[split].content_digest}\n".encode())
    return digest.hexdigest()[:length]


def dataset_class_names(url: str) -> tuple[str, ...]:
    """The class names of a dataset directory or shard directory (read from its manifest)."""
    splits = resolve_splits(url)
    return class_names(ShardSet.open(splits.train).manifest)


def is_fashion_mnist(files: Mapping[str, tuple[str, str]]) -> bool:
    """Whether the label files of ``files`` (from :func:`find_idx_files`) are Fashion-MNIST's release."""
    return all(
        _content_md5(labels_url) == FASHION_MNIST_LABEL_MD5.get(split)
        for split, (_, labels_url) in files.items()
    )


def _content_md5(url: str) -> str | None:
    """MD5 of the file's content, decompressed when gzipped; None when it cannot be read (the ingest
    reports why, with the offset, when it gets there)."""
    try:
        data = storage.read_bytes(url)
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def idx_class_names(files: Mapping[str, tuple[str, str]], given: Sequence[str] = ()) -> tuple[str, ...]:
    """The class names of IDX data: ``given``, else Fashion-MNIST's for its release, else the numbers."""
    if given:
        return tuple(given)
    if is_fashion_mnist(files):
        return FASHION_MNIST_CLASS_NAMES
    log.info(
        "the IDX files are not the Fashion-MNIST release: classes are named by their numbers 0..%d; "
        "pass --class-names NAME,NAME,... to name them",
        NUM_CLASSES - 1,
        extra=logs.fields(labels=[labels for _, labels in files.values()]),
    )
    return numbered_class_names()


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


def idx_records(images_url: str, labels_url: str, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (images, labels) of an IDX pair in chunks of ``chunk`` records, checked as they are read
    (dtype, shapes, counts, labels in range); a problem raises :class:`DataError` naming the file."""
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


def already_done(url: str, source: Mapping[str, Any], names: Sequence[str]) -> Manifest | None:
    """The manifest of ``url`` when it holds a complete split converted from ``source`` with ``names``."""
    try:
        manifest = ShardSet.open(url).manifest
    except DataError:
        return None
    done = (
        manifest.metadata.get("complete")
        and manifest.metadata.get("source") == dict(source)
        and manifest.metadata.get("class_names") == list(names)
    )
    return manifest if done else None


def _write_split(
    url: str,
    records: Iterator[tuple[np.ndarray, np.ndarray]],
    *,
    total: int,
    image_shape: tuple[int, int],
    shard_size: int,
    source: Mapping[str, Any],
    names: Sequence[str],
) -> Manifest:
    writer = ShardWriter(
        url,
        shard_size=shard_size,
        image_shape=image_shape,
        num_classes=NUM_CLASSES,
        metadata={"source": dict(source), "complete": False, "class_names": list(names)},
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


def ingest_idx(
    source: str, output: str, *, shard_size: int, class_names: Sequence[str] = ()
) -> dict[str, Manifest]:
    """Converts the IDX files under ``source`` into ``output/{train,test}`` shards; ``class_names``
    names the classes (default: :func:`idx_class_names`)."""
    _check_class_names(class_names)
    files = find_idx_files(source)
    names = idx_class_names(files, class_names)
    result = {}
    for split, (images_url, labels_url) in files.items():
        split_url = storage.join(output, split)
        description = {"kind": "idx", "images": images_url, "labels": labels_url}
        result[split] = _ingest_split(
            split_url,
            description,
            names,
            shard_size,
            lambda i=images_url, l=labels_url: idx_records(i, l, shard_size),  # noqa: E741
            lambda i=images_url: idx_header(i),
        )
    return result


def idx_header(images_url: str) -> tuple[int, tuple[int, int]]:
    """(records, (rows, cols)) from the header of an IDX images file."""
    with idx.IdxReader(images_url) as reader:
        if len(reader.shape) != 3:
            raise DataError(images_url, f"expected images [n, rows, cols], the header says {reader.shape}", 3)
        return reader.shape[0], (reader.shape[1], reader.shape[2])


def ingest_synthetic(
    output: str,
    *,
    train_records: int,
    test_records: int,
    seed: int,
    shard_size: int,
    class_names: Sequence[str] = (),
) -> dict[str, Manifest]:
    """Generates synthetic Fashion-MNIST into ``output/{train,test}`` shards; its classes are named
    Fashion-MNIST's unless ``class_names`` says otherwise."""
    _check_class_names(class_names)
    names = tuple(class_names) or FASHION_MNIST_CLASS_NAMES
    result = {}
    for split, count in (("train", train_records), ("test", test_records)):
        description = {"kind": "synthetic", "version": SYNTHETIC_VERSION, "seed": seed, "records": count}
        result[split] = _ingest_split(
            storage.join(output, split),
            description,
            names,
            shard_size,
            lambda c=count, s=split: _synthetic_records(c, seed, s),
            lambda c=count: (c, (synthetic.SIZE, synthetic.SIZE)),
        )
    return result


def _check_class_names(names: Sequence[str]) -> None:
    problem = class_names_problem(names)
    if problem:
        raise ValueError(f"class names: {problem}")


def _ingest_split(
    url: str,
    description: Mapping[str, Any],
    names: Sequence[str],
    shard_size: int,
    records: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
    header: Callable[[], tuple[int, tuple[int, int]]],
) -> Manifest:
    description = {**description, "shard_size": shard_size}
    done = already_done(url, description, names)
    if done is not None:
        log.info("shards already up to date", extra=logs.fields(url=url, records=done.records))
        return done
    total, image_shape = header()
    manifest = _write_split(
        url,
        records(),
        total=total,
        image_shape=image_shape,
        shard_size=shard_size,
        source=description,
        names=names,
    )
    log.info(
        "wrote shards", extra=logs.fields(url=url, records=manifest.records, shards=len(manifest.shards))
    )
    return manifest
