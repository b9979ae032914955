"""The IDX format of (Fashion-)MNIST, gzipped or not, from any URL: read streaming, validated, and written.

An IDX file is: two zero bytes, a type code (0x08 = unsigned byte, ...), the number of dimensions,
each dimension as a big-endian uint32, then the values in row-major order. Every failure names the
file and the byte offset where the content stops making sense; for a gzipped file, offsets inside
the decompressed content say so.
"""

from __future__ import annotations

import gzip
import io
import pathlib
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from workloads.core import storage
from workloads.core.errors import DataError
from workloads.core.fsutil import atomic_write_bytes

_GZIP_MAGIC = b"\x1f\x8b"
_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}
_CHUNK = 1 << 20


class _Inflater:
    """A readable view of a gzip stream that reports corruption with the compressed byte offset."""

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self._raw = raw
        self._name = name
        self._inflate = zlib.decompressobj(wbits=31)
        self._buffer = bytearray()
        self._consumed = 0

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if self._inflate.eof:
                # Concatenated gzip members are legal; start the next one.
                rest = self._inflate.unused_data
                if not rest and not (rest := self._raw.read(_CHUNK)):
                    break
                self._inflate = zlib.decompressobj(wbits=31)
                self._feed(rest)
                continue
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                raise DataError(
                    self._name,
                    "gzip stream ends early: the compressed file is truncated",
                    offset=self._consumed,
                )
            self._feed(chunk)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def _feed(self, chunk: bytes) -> None:
        start = self._consumed
        self._consumed += len(chunk)
        try:
            self._buffer += self._inflate.decompress(chunk)
        except zlib.error as error:
            raise DataError(
                self._name, f"corrupt gzip data in the block starting here ({error})", offset=start
            ) from None


class IdxReader:
    """Streams the records of one IDX file: ``shape``, ``dtype``, then ``read(n)`` / ``chunks(n)``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._handle: BinaryIO | None = None
        self._stream: BinaryIO | _Inflater | None = None
        self.compressed = False
        self._offset = 0
        self.dtype: np.dtype = np.dtype(np.uint8)
        self.shape: tuple[int, ...] = ()
        self.records_read = 0

    def __enter__(self) -> IdxReader:
        try:
            if storage.is_local(self.url):
                self._handle = storage.local_path(self.url).open("rb")
            else:
                fs, path = storage.filesystem(self.url)
                self._handle = fs.open(path, "rb")
        except FileNotFoundError:
            raise DataError(self.url, "file not found") from None
        self.compressed = self._handle.read(2) == _GZIP_MAGIC
        self._handle.seek(0)
        self._stream = _Inflater(self._handle, self.url) if self.compressed else self._handle
        self._read_header()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()

    @property
    def record_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def record_bytes(self) -> int:
        return int(np.prod(self.record_shape, dtype=np.int64)) * self.dtype.itemsize

    def _where(self) -> str:
        return " of the decompressed content" if self.compressed else ""

    def _read_exact(self, size: int, what: str) -> bytes:
        data = self._stream.read(size)
        if len(data) != size:
            raise DataError(
                self.url,
                f"truncated: expected {size} bytes of {what}{self._where()}, found {len(data)}",
                offset=self._offset + len(data),
            )
        self._offset += size
        return data

    def _read_header(self) -> None:
        zero, code, ndim = struct.unpack(">HBB", self._read_exact(4, "IDX header"))
        if zero != 0:
            raise DataError(
                self.url, f"not an IDX file: the first two bytes are {zero:#06x}, expected 0x0000", offset=0
            )
        if code not in _TYPES:
            raise DataError(self.url, f"unknown IDX type code {code:#04x}", offset=2)
        if ndim == 0:
            raise DataError(self.url, "IDX header declares 0 dimensions", offset=3)
        self.dtype = _TYPES[code]
        self.shape = struct.unpack(f">{ndim}I", self._read_exact(4 * ndim, "dimension sizes"))

    def read(self, count: int) -> np.ndarray:
        """The next ``count`` records (fewer at the end); the end is checked for missing or extra bytes."""
        count = min(count, self.shape[0] - self.records_read)
        data = self._read_exact(count * self.record_bytes, f"records {self.records_read}..")
        self.records_read += count
        if self.records_read == self.shape[0] and self._stream.read(1):
            raise DataError(
                self.url,
                f"unexpected bytes after the {self.shape[0]} records the header declares{self._where()}",
                offset=self._offset,
            )
        values = np.frombuffer(data, dtype=self.dtype).reshape((count, *self.record_shape))
        return values.astype(self.dtype.newbyteorder("="), copy=False)

    def chunks(self, count: int) -> Iterator[np.ndarray]:
        while self.records_read < self.shape[0]:
            yield self.read(count)


def read_idx(url: str) -> np.ndarray:
    """The whole IDX file as one array (small files: labels, test sets)."""
    with IdxReader(url) as reader:
        return reader.read(reader.shape[0]) if reader.shape[0] else np.empty(reader.shape, reader.dtype)


def write_idx(path: str | pathlib.Path, values: np.ndarray, *, compress: bool = False) -> None:
    """Writes ``values`` (uint8 or int8) as an IDX file, gzipped when ``compress``."""
    values = np.ascontiguousarray(values)
    if values.dtype not in _CODES:
        raise ValueError(f"write_idx supports uint8 and int8, got {values.dtype}")
    header = struct.pack(">HBB", 0, _CODES[values.dtype], values.ndim)
    header += struct.pack(f">{values.ndim}I", *values.shape)
    payload = header + values.tobytes()
    buffer = io.BytesIO()
    if compress:
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped:
            zipped.write(payload)
        payload = buffer.getvalue()
    atomic_write_bytes(path, payload)
