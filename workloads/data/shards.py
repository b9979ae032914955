"""The shard format: fixed-size, checksummed, memory-mappable files of images and labels, and a manifest.

A shard directory (local path or fsspec URL) holds ``manifest.json`` and ``shard-NNNNN-<hash>.bin``
files. The manifest is the commit point: a shard file not listed there does not exist for readers, so
a writer that dies between writing a shard and rewriting the manifest leaves the dataset as it was.
The full specification is in ``docs/interfaces.md`` ("Shard format"); in short, a shard file is a
64-byte little-endian header (magic ``MLSHARD\\0``, format version, record count, rows, cols, label
bytes) followed by the images (uint8, row-major, ``records x rows x cols``) and then the labels
(uint8, ``records``), so ``numpy.memmap`` reads either part without copying or parsing.

:class:`ShardWriter` appends records and commits shards one by one, each with caller-supplied
metadata recorded in the manifest (the streaming ingester stores Kafka offsets there), and resumes from
the manifest. :class:`ShardSet` reads a committed dataset: local shards are memory-mapped in place;
remote shards are fetched one at a time into a local cache (verified against their checksum on the
way in) and memory-mapped from there, so datasets larger than memory stream.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import pathlib
import re
import struct
import tempfile
import threading
import uuid
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workloads.core import logs, storage
from workloads.core.errors import DataError, StorageError

MAGIC = b"MLSHARD\x00"
DEFAULT_SHARD_SIZE = 4096  # records per shard, for ingest and stream-ingest alike
FORMAT_VERSION = 1
HEADER_SIZE = 64
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "mlstack.shards"
BLOCK_SIZE = 1 << 20  # per-block CRC32s let a checksum failure name the byte offset
_HEADER = struct.Struct("<8sIIIII")
_SHARD_FILE = re.compile(r"^shard-(\d{5,})-[0-9a-f]{12}\.bin$")
DEFAULT_CACHE_DIR = pathlib.Path(
    os.environ.get("MLSTACK_CACHE_DIR", pathlib.Path.home() / ".cache" / "mlstack" / "shards")
)


@dataclasses.dataclass(frozen=True)
class ShardEntry:
    """One committed shard as the manifest records it."""

    file: str
    records: int
    bytes: int
    sha256: str
    block_crc32: tuple[int, ...]
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "records": self.records,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "block_crc32": list(self.block_crc32),
            "metadata": dict(self.metadata),
        }


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a shard directory holds; readers trust nothing that is not listed here."""

    image_shape: tuple[int, int]
    num_classes: int
    shard_size: int
    shards: tuple[ShardEntry, ...] = ()
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(entry.records for entry in self.shards)

    @property
    def content_digest(self) -> str:
        """SHA-256 over what defines the records: image shape, class count, and each shard's SHA-256 and
        record count in order. Metadata (Kafka offsets, sources, timestamps) and file names are left
        out, so the same records written twice into the same shards have the same digest, and any
        changed image or label changes it."""
        digest = hashlib.sha256()
        rows, cols = self.image_shape
        digest.update(
            f"{MANIFEST_FORMAT} v{FORMAT_VERSION} {rows}x{cols} classes={self.num_classes}\n".encode()
        )
        for entry in self.shards:
            digest.update(f"{entry.sha256} {entry.records}\n".encode())
        return digest.hexdigest()

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "version": FORMAT_VERSION,
                "image_shape": list(self.image_shape),
                "image_dtype": "uint8",
                "label_dtype": "uint8",
                "num_classes": self.num_classes,
                "shard_size": self.shard_size,
                "records": self.records,
                "metadata": dict(self.metadata),
                "shards": [entry.to_json() for entry in self.shards],
            },
            indent=1,
        )

    @classmethod
    def parse(cls, text: bytes | str, url: str) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise DataError(url, f"manifest is not valid JSON ({error})") from None
        try:
            if data.get("format") != MANIFEST_FORMAT:
                raise DataError(url, f"format is {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
            if data.get("version") != FORMAT_VERSION:
                raise DataError(
                    url,
                    f"shard format version {data.get('version')} is not supported (this reads {FORMAT_VERSION})",
                )
            shards = tuple(
                ShardEntry(
                    file=str(item["file"]),
                    records=int(item["records"]),
                    bytes=int(item["bytes"]),
                    sha256=str(item["sha256"]),
                    block_crc32=tuple(int(v) for v in item["block_crc32"]),
                    metadata=dict(item.get("metadata", {})),
                )
                for item in data["shards"]
            )
            rows, cols = (int(v) for v in data["image_shape"])
            manifest = cls(
                image_shape=(rows, cols),
                num_classes=int(data["num_classes"]),
                shard_size=int(data["shard_size"]),
                shards=shards,
                metadata=dict(data.get("metadata", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(url, f"manifest is malformed: missing or invalid field {error}") from None
        if manifest.records != data.get("records", manifest.records):
            raise DataError(
                url, f"manifest says {data['records']} records but its shards hold {manifest.records}"
            )
        return manifest


def encode_shard(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Header, images and labels of one shard file."""
    count, rows, cols = images.shape
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, count, rows, cols, 1).ljust(HEADER_SIZE, b"\x00")
    return b"".join((header, np.ascontiguousarray(images).tobytes(), np.ascontiguousarray(labels).tobytes()))


def shard_bytes(records: int, image_shape: Sequence[int]) -> int:
    return HEADER_SIZE + records * (int(np.prod(image_shape)) + 1)


def shard_entry(index: int, data: bytes, metadata: Mapping[str, Any] | None = None) -> ShardEntry:
    """The manifest entry of ``data`` (an encoded shard) as shard number ``index`` of its directory:
    its file name (number and content hash), size and checksums."""
    digest = hashlib.sha256(data).hexdigest()
    return ShardEntry(
        file=f"shard-{index:05d}-{digest[:12]}.bin",
        records=_HEADER.unpack_from(data, 0)[2],
        bytes=len(data),
        sha256=digest,
        block_crc32=_block_crcs(data),
        metadata=dict(metadata or {}),
    )


def _block_crcs(data: bytes | memoryview) -> tuple[int, ...]:
    view = memoryview(data)
    return tuple(zlib.crc32(view[i : i + BLOCK_SIZE]) for i in range(0, len(view), BLOCK_SIZE))


def _first_bad_block(data: bytes | memoryview, expected: Sequence[int]) -> int | None:
    for index, crc in enumerate(_block_crcs(data)):
        if index >= len(expected) or crc != expected[index]:
            return index * BLOCK_SIZE
    return None


def check_shard_bytes(
    data: bytes | memoryview, entry: ShardEntry, image_shape: Sequence[int], name: str
) -> None:
    """Raises :class:`DataError` naming the file and byte offset unless ``data`` is exactly ``entry``."""
    if len(data) < entry.bytes:
        raise DataError(
            name, f"truncated: the manifest says {entry.bytes} bytes, found {len(data)}", len(data)
        )
    if len(data) > entry.bytes:
        raise DataError(name, f"{len(data) - entry.bytes} bytes more than the manifest says", entry.bytes)
    magic, version, records, rows, cols, label_bytes = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise DataError(name, f"not a shard file: magic is {bytes(magic)!r}, expected {MAGIC!r}", 0)
    if version != FORMAT_VERSION:
        raise DataError(name, f"shard format version {version} is not supported", 8)
    if records != entry.records:
        raise DataError(name, f"header says {records} records, the manifest says {entry.records}", 12)
    if (rows, cols) != tuple(image_shape) or label_bytes != 1:
        raise DataError(
            name, f"header says {rows}x{cols} images, the manifest says {image_shape[0]}x{image_shape[1]}", 16
        )
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        offset = _first_bad_block(data, entry.block_crc32)
        raise DataError(
            name,
            "content does not match its checksum in the manifest (the file is corrupt; "
            "re-ingest the dataset or restore the file)",
            offset,
        )


class ShardCache:
    """Local copies of remote shards, named by their SHA-256, filled one shard at a time.

    A file is only renamed into place after its checksum matched, so anything in the cache is good.
    With ``max_bytes`` the least recently used copies are removed to make room; a copy that is still
    memory-mapped stays readable after removal (POSIX keeps unlinked mapped files alive).

    A cache directory that cannot be written (the cluster images' root filesystem is read-only, and the
    default is under ``~/.cache``) falls back, with one warning that names the directory, the reason and
    ``--cache-dir`` / ``MLSTACK_CACHE_DIR``, to a private directory under the system's temporary
    directory (``TMPDIR``, the writable scratch volume of a pod). Falling back rather than failing:
    the cache only holds checksummed copies, so where they are changes nothing that is read, and
    failing would make every remote read of the default settings fail in those images. Copies already
    in the read-only directory (a pre-filled cache) are still used. A cache that cannot be written for
    another reason (a full disk), or no writable fallback, is a :class:`StorageError` naming the flag.
    """

    # errnos that mean "this directory cannot be written here", answered by falling back
    _UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST})

    def __init__(
        self, directory: str | os.PathLike = DEFAULT_CACHE_DIR, max_bytes: int | None = None
    ) -> None:
        self.configured = pathlib.Path(directory)
        self.directory = self.configured  # where new copies go: the fallback once it could not be written
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def fetch(self, url: str, entry: ShardEntry, image_shape: Sequence[int]) -> pathlib.Path:
        name = f"{entry.sha256}.bin"
        for directory in dict.fromkeys((self.directory, self.configured)):
            target = directory / name
            if target.exists() and target.stat().st_size == entry.bytes:
                with contextlib.suppress(OSError):  # a read-only cache keeps its order, not its copies
                    os.utime(target)
                return target
        fs, path = storage.filesystem(url)
        try:
            with storage.reporting(url), fs.open(path, "rb") as remote:
                data = remote.read()
        except FileNotFoundError:
            raise DataError(url, "listed in the manifest but missing from storage") from None
        check_shard_bytes(data, entry, image_shape, url)
        directory = self.directory
        try:
            target = self._store(directory, name, data)
        except OSError as error:
            target = self._store(self._fall_back(directory, error), name, data)
        self._evict(keep=target)
        return target

    @staticmethod
    def _store(directory: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        temporary = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
        return target

    def _fall_back(self, failed: pathlib.Path, error: OSError) -> pathlib.Path:
        """The directory to write to after ``failed`` could not be written; raises when there is none."""
        flag = "set --cache-dir (MLSTACK_CACHE_DIR) to a writable directory"
        with self._lock:
            if self.directory != failed:  # another thread (the prefetcher) fell back already
                return self.directory
            if error.errno not in self._UNWRITABLE or failed != self.configured:
                raise StorageError(
                    str(failed), f"cannot write the shard cache ({error.strerror or error})", flag
                )
            fallback = pathlib.Path("<the temporary directory>")
            try:
                fallback = pathlib.Path(tempfile.gettempdir()) / f"mlstack-shards-{os.getuid()}"
                fallback.mkdir(mode=0o700, exist_ok=True)
                if fallback.stat().st_uid != os.getuid():  # a shared /tmp: never trust another user's folder
                    fallback = pathlib.Path(tempfile.mkdtemp(prefix="mlstack-shards-"))
            except OSError as second:
                raise StorageError(
                    str(failed),
                    f"cannot write the shard cache ({error.strerror or error}), nor {fallback} "
                    f"({second.strerror or second})",
                    flag,
                ) from None
            logging.getLogger(__name__).warning(
                "shard cache %s cannot be written (%s); caching in %s instead; %s",
                failed,
                error.strerror or error,
                fallback,
                flag,
                extra=logs.fields(cache_dir=str(failed), fallback=str(fallback)),
            )
            self.directory = fallback
            return fallback

    def _evict(self, keep: pathlib.Path) -> None:
        if self.max_bytes is None:
            return
        with self._lock:
            files = sorted(self.directory.glob("*.bin"), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
            for path in files:
                if total <= self.max_bytes:
                    break
                if path != keep:
                    total -= path.stat().st_size
                    path.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class Shard:
    """The images ``[n, rows, cols]`` and labels ``[n]`` of one shard, memory-mapped read-only."""

    images: np.ndarray
    labels: np.ndarray


class ShardSet:
    """A committed shard directory, for reading. Open with :meth:`open`."""

    OPEN_SHARDS = 64  # memory maps kept open at once (each holds a file descriptor)

    def __init__(self, url: str, manifest: Manifest, cache: ShardCache | None = None) -> None:
        self.url = url
        self.manifest = manifest
        self.cache = cache or ShardCache()
        self.remote = not storage.is_local(url)
        self.boundaries = np.concatenate([[0], np.cumsum([e.records for e in manifest.shards])]).astype(
            np.int64
        )
        self._open: collections.OrderedDict[int, Shard] = collections.OrderedDict()
        self._verified: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()
        self._prefetcher: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def open(cls, url: str, cache: ShardCache | None = None) -> ShardSet:
        manifest_url = storage.join(url, MANIFEST_NAME)
        try:
            text = storage.read_bytes(manifest_url)
        except FileNotFoundError:
            raise DataError(
                manifest_url,
                "no shard manifest here: point at a directory written by `python -m workloads ingest`",
            ) from None
        return cls(url, Manifest.parse(text, manifest_url), cache)

    def __len__(self) -> int:
        return int(self.boundaries[-1])

    @property
    def num_shards(self) -> int:
        return len(self.manifest.shards)

    def shard(self, index: int) -> Shard:
        """Shard ``index``, memory-mapped (fetched into the cache first when remote; checked once)."""
        with self._lock:
            if index in self._open:
                self._open.move_to_end(index)
                return self._open[index]
        entry = self.manifest.shards[index]
        mapped = self._map(self.checked_file(index))
        pixels = int(np.prod(self.manifest.image_shape)) * entry.records
        mapped = mapped.view(np.ndarray)  # plain arrays (still backed by the map) for whoever slices them
        shard = Shard(
            images=mapped[HEADER_SIZE : HEADER_SIZE + pixels].reshape(
                entry.records, *self.manifest.image_shape
            ),
            labels=mapped[HEADER_SIZE + pixels :],
        )
        with self._lock:
            self._open[index] = shard
            while len(self._open) > self.OPEN_SHARDS:
                self._open.popitem(last=False)
        return shard

    def checked_file(self, index: int) -> pathlib.Path:
        """The local file of shard ``index`` (fetched into the cache first when remote), its size, header
        and SHA-256 checked against the manifest once per file version: what :meth:`shard` maps, and
        what readers that open the file themselves (TensorFlow's) read. Raises :class:`DataError`
        naming the file when it does not match."""
        entry = self.manifest.shards[index]
        path = self._local_file(index)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._verified:
            check_shard_bytes(
                self._map(path), entry, self.manifest.image_shape, storage.join(self.url, entry.file)
            )
            with self._lock:
                self._verified.add(key)
        return path

    @staticmethod
    def _map(path: pathlib.Path) -> np.ndarray:
        try:
            return np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as error:
            raise DataError(str(path), f"cannot memory-map the shard ({error})") from None

    def _local_file(self, index: int) -> pathlib.Path:
        entry = self.manifest.shards[index]
        if not self.remote:
            path = storage.local_path(self.url) / entry.file
            if not path.exists():
                raise DataError(str(path), "listed in the manifest but missing from disk")
            return path
        return self.cache.fetch(storage.join(self.url, entry.file), entry, self.manifest.image_shape)

    def prefetch(self, indices: Sequence[int]) -> None:
        """Starts fetching remote shards into the cache in the background (no-op for local data)."""
        if not self.remote:
            return
        if self._prefetcher is None:
            self._prefetcher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shard-prefetch")
        for index in indices:
            entry = self.manifest.shards[index]
            self._prefetcher.submit(
                self.cache.fetch, storage.join(self.url, entry.file), entry, self.manifest.image_shape
            )

    def locate(self, record: int) -> tuple[int, int]:
        """(shard index, index inside the shard) of a dataset-wide record number."""
        shard = int(np.searchsorted(self.boundaries, record, side="right") - 1)
        return shard, record - int(self.boundaries[shard])

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """Every record in order, copied into memory (for evaluation sets)."""
        shards = [self.shard(i) for i in range(self.num_shards)]
        rows, cols = self.manifest.image_shape
        if not shards:
            return np.empty((0, rows, cols), np.uint8), np.empty((0,), np.uint8)
        return np.concatenate([s.images for s in shards]), np.concatenate([s.labels for s in shards])


class ShardWriter:
    """Appends records to a shard directory and commits them one shard at a time.

    ``append`` buffers records (at most ``shard_size`` before a commit); ``commit(metadata)`` writes
    the buffered records as one shard file and then the manifest listing it with ``metadata`` (for
    example the Kafka offsets the records came from). Opening a directory that already has a manifest
    resumes it: committed shards are kept, ``last_metadata`` says where the last commit ended, and
    shard files that never made it into the manifest (a writer that died mid-commit) are removed.
    One writer per directory at a time.

    With ``publish_each_commit=False`` the manifest is written only by :meth:`publish` (batch
    conversion: readers see the whole dataset or none of it). With ``resume=False`` the writer starts
    an empty dataset that replaces the directory's current one when published; until then readers
    keep reading the old one, and its files are removed only after the new manifest is in place.
    """

    def __init__(
        self,
        url: str,
        *,
        shard_size: int,
        image_shape: tuple[int, int] = (28, 28),
        num_classes: int = 10,
        metadata: Mapping[str, Any] | None = None,
        publish_each_commit: bool = True,
        resume: bool = True,
    ) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        if not 1 <= num_classes <= 256:
            raise ValueError(f"num_classes must be 1..256 (labels are uint8), got {num_classes}")
        self.url = url
        self.publish_each_commit = publish_each_commit
        self._manifest_url = storage.join(url, MANIFEST_NAME)
        self._pending_images: list[np.ndarray] = []
        self._pending_labels: list[np.ndarray] = []
        self.pending = 0
        self._unpublished: list[str] = []  # shard files written but not yet listed in a published manifest
        existing = self._read_existing() if resume else None
        self._replacing = not resume
        if existing is None:
            self.manifest = Manifest(tuple(image_shape), num_classes, shard_size, (), dict(metadata or {}))
        else:
            wanted = (tuple(image_shape), num_classes, shard_size)
            found = (existing.image_shape, existing.num_classes, existing.shard_size)
            if wanted != found:
                raise DataError(
                    self._manifest_url,
                    f"cannot resume: the directory holds (image_shape, num_classes, shard_size) = {found}, "
                    f"this writer was asked for {wanted}",
                )
            merged = {**existing.metadata, **(metadata or {})}
            self.manifest = dataclasses.replace(existing, metadata=merged)
        if resume:
            self._remove_orphans()

    def _read_existing(self) -> Manifest | None:
        try:
            return Manifest.parse(storage.read_bytes(self._manifest_url), self._manifest_url)
        except FileNotFoundError:
            return None

    def _remove_orphans(self) -> None:
        listed = {entry.file for entry in self.manifest.shards}
        if storage.is_local(self.url):
            directory = storage.local_path(self.url)
            directory.mkdir(parents=True, exist_ok=True)
            names = [p.name for p in directory.iterdir()]
            for name in names:
                if (_SHARD_FILE.match(name) and name not in listed) or ".tmp" in name:
                    (directory / name).unlink(missing_ok=True)
            return
        fs, path = storage.filesystem(self.url)
        if not fs.exists(path):
            return
        for item in fs.ls(path, detail=False):
            name = item.rstrip("/").rsplit("/", 1)[-1]
            if (_SHARD_FILE.match(name) and name not in listed) or ".tmp-" in name:
                fs.rm_file(item)

    @property
    def committed(self) -> tuple[ShardEntry, ...]:
        return self.manifest.shards

    @property
    def last_metadata(self) -> Mapping[str, Any] | None:
        """The metadata of the last committed shard (where a resumed ingester continues from)."""
        return self.manifest.shards[-1].metadata if self.manifest.shards else None

    @property
    def room(self) -> int:
        return self.manifest.shard_size - self.pending

    def append(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Buffers records; raises ``ValueError`` if they do not fit (``room``) or are malformed."""
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim == 2 and tuple(images.shape) == self.manifest.image_shape:
            images, labels = images[None], labels.reshape(1)
        if images.ndim != 3 or tuple(images.shape[1:]) != self.manifest.image_shape:
            raise ValueError(f"images must have shape [n, {self.manifest.image_shape}], got {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"expected {images.shape[0]} labels, got shape {labels.shape}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.manifest.num_classes):
            raise ValueError(
                f"labels must be in 0..{self.manifest.num_classes - 1}, got {labels.min()}..{labels.max()}"
            )
        if images.shape[0] > self.room:
            raise ValueError(
                f"{images.shape[0]} records do not fit: the open shard has room for {self.room}; commit first"
            )
        self._pending_images.append(images)
        self._pending_labels.append(labels.astype(np.uint8))
        self.pending += images.shape[0]

    def commit(self, metadata: Mapping[str, Any] | None = None) -> ShardEntry | None:
        """Writes the buffered records as one shard, then (by default) the manifest. None if empty."""
        if self.pending == 0:
            return None
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as error:
            raise ValueError(f"shard metadata must be JSON-serialisable: {error}") from None
        data = encode_shard(np.concatenate(self._pending_images), np.concatenate(self._pending_labels))
        entry = shard_entry(len(self.manifest.shards), data, metadata)
        storage.publish_bytes(storage.join(self.url, entry.file), data)
        self._unpublished.append(entry.file)
        self.manifest = dataclasses.replace(self.manifest, shards=(*self.manifest.shards, entry))
        self._pending_images.clear()
        self._pending_labels.clear()
        self.pending = 0
        if self.publish_each_commit:
            self.publish()
        return entry

    def publish(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Writes the manifest (the commit point), merging ``metadata`` into the dataset metadata."""
        if metadata:
            self.manifest = dataclasses.replace(
                self.manifest, metadata={**self.manifest.metadata, **metadata}
            )
        if storage.is_local(self.url):
            storage.local_path(self.url).mkdir(parents=True, exist_ok=True)
        storage.publish_bytes(self._manifest_url, self.manifest.to_json().encode())
        self._unpublished.clear()
        if self._replacing:
            self._remove_orphans()
            self._replacing = False

    def publish_entries(
        self, entries: Sequence[ShardEntry], metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Publishes a dataset whose shard files others wrote already (one task per shard, say):
        ``entries`` in order, as :func:`shard_entry` describes them."""
        self.manifest = dataclasses.replace(self.manifest, shards=tuple(entries))
        self.publish(metadata)

    def discard(self) -> None:
        """Deletes the shard files this writer wrote since its last publish (after a failure)."""
        for name in self._unpublished:
            url = storage.join(self.url, name)
            if storage.is_local(url):
                storage.local_path(url).unlink(missing_ok=True)
            else:
                fs, path = storage.filesystem(url)
                if fs.exists(path):
                    fs.rm_file(path)
        self._unpublished.clear()
        self._pending_images.clear()
        self._pending_labels.clear()
        self.pending = 0

    def write(
        self, images: np.ndarray, labels: np.ndarray, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Appends any number of records, committing a shard each time one fills up."""
        start = 0
        while start < len(images):
            take = min(self.room, len(images) - start)
            self.append(images[start : start + take], labels[start : start + take])
            start += take
            if self.room == 0:
                self.commit(metadata)
