"""What the Spark engine's Python tasks do to records, on Arrow batches (no Spark here).

Every function takes and returns ``pyarrow`` arrays, record batches or tables of plain columns, so
records cross between the JVM and Python in batches; hashing, counting and sorting hashes stay in
Spark SQL. The functions depend only on their arguments, this package and the environment: an
executor on another host runs them as they are, with storage settings from its own environment
(:mod:`workloads.core.storage`).

Reading turns source rows into rows of :data:`ROW_SCHEMA`: ``check_batches`` checks a Parquet table's
rows (image as PNG bytes, ``rows*cols`` raw bytes or an array of ``rows*cols`` ints 0..255; label;
split) and ``idx_batches`` reads ranges of IDX pairs. ``shard_numbers`` gives each record its shard
from its hash, and ``write_shard`` writes one whole shard file through :mod:`workloads.core.storage`
and returns its manifest entry with the statistics the driver adds up.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from workloads.core import storage
from workloads.core.errors import WorkloadError
from workloads.data import datasets
from workloads.data.shards import encode_shard, shard_entry

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HASH_BYTES = 32  # a record's hash: SHA-256 of its pixels and label byte
OK, REJECT, FATAL = "ok", "reject", "fatal"  # a row's kind: a record, a bad row, a failure of the source
# A source row after reading: a record (kind ok: pixels = rows*cols raw bytes) or why it is not one
# (problem; raw_image = a rejected row's image as the source held it, when that was bytes).
ROW_SCHEMA = (
    "kind string, split string, pixels binary, label long, file string, row long, problem string, "
    "raw_image binary"
)
RANGE_SCHEMA = "split string, images_url string, labels_url string, start long, count long"
RESULT_SCHEMA = (
    "split string, shard long, entry string, class_counts array<long>, pixel_sum long, "
    "pixel_squares long, error string"
)


def _arrow_schema(ddl: str) -> Any:
    """The Arrow schema of a DDL string of this module (string, binary, long and array<long> columns)."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "binary": pa.binary(),
        "long": pa.int64(),
        "array<long>": pa.list_(pa.int64()),
    }
    return pa.schema(
        [(name, types[kind]) for name, kind in (f.strip().split(" ", 1) for f in ddl.split(","))]
    )


def _binary(values: np.ndarray) -> Any:
    """``values`` [n, k] uint8 as an Arrow binary array of n values of k bytes (one copy)."""
    import pyarrow as pa

    count, width = values.shape
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(values).reshape(-1)
    return pa.Array.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def pixel_array(column: Any, pixels: int) -> np.ndarray:
    """A binary column whose values are all ``pixels`` bytes, as a [n, pixels] uint8 array."""
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.empty((0, pixels), np.uint8)
    width = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], width)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(len(array), pixels)


def _batch(columns: dict[str, Any], count: int) -> Any:
    """A batch of :data:`ROW_SCHEMA` from the ``columns`` given (Arrow arrays or lists); the rest null."""
    import pyarrow as pa

    schema = _arrow_schema(ROW_SCHEMA)
    arrays = [
        pa.array(columns.get(field.name, [None] * count), field.type)
        if not isinstance(columns.get(field.name), pa.Array)
        else columns[field.name]
        for field in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _repeat(value: Any, count: int, kind: Any) -> Any:
    import pyarrow as pa

    return pa.array([value] * count, kind)


def idx_batches(ranges: Iterable[Any], chunk: int) -> Iterator[Any]:
    """For each range row of :data:`RANGE_SCHEMA`, records ``start .. start+count`` of that IDX pair
    (read from the start: gzip cannot seek); a problem with the files is one FATAL row naming it."""
    for batch in ranges:
        for split, images_url, labels_url, start, count in zip(*batch.to_pydict().values(), strict=True):
            yield from _idx_range(split, images_url, labels_url, start, count, chunk)


def _idx_range(
    split: str, images_url: str, labels_url: str, start: int, count: int, chunk: int
) -> Iterator[Any]:
    import pyarrow as pa

    try:
        seen = 0
        for images, labels in datasets.idx_records(images_url, labels_url, chunk):
            low, high = max(start - seen, 0), min(start + count - seen, len(labels))
            if low < high:
                taken = high - low
                yield _batch(
                    {
                        "kind": _repeat(OK, taken, pa.string()),
                        "split": _repeat(split, taken, pa.string()),
                        "pixels": _binary(images[low:high].reshape(taken, -1)),
                        "label": pa.array(labels[low:high].astype(np.int64)),
                        "file": _repeat(images_url, taken, pa.string()),
                        "row": pa.array(np.arange(seen + low, seen + high, dtype=np.int64)),
                    },
                    taken,
                )
            seen += len(labels)
            if seen >= start + count:
                return
    except WorkloadError as error:
        yield _batch(
            {
                "kind": [FATAL],
                "split": [split],
                "file": [images_url],
                "row": [start],
                "problem": [str(error)],
            },
            1,
        )


def check_batches(batches: Iterable[Any], shape: Sequence[int]) -> Iterator[Any]:
    """Parquet rows ``(image, label, split, file_path, row_index)`` as rows of :data:`ROW_SCHEMA`.

    Raw-pixel rows with a good label and split pass as they are, in bulk; the others (PNG, arrays of
    ints, anything wrong) are decoded or explained one by one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pixels = int(np.prod(shape))
    for batch in batches:
        image, label, split = batch.column(0), batch.column(1), batch.column(2)
        good_label = pc.fill_null(
            pc.and_(pc.greater_equal(label, 0), pc.less(label, datasets.NUM_CLASSES)), False
        )
        good_split = pc.or_(pc.is_null(split), pc.is_in(split, pa.array(datasets.SPLITS)))
        fast = pc.and_(good_label, pc.fill_null(good_split, False))
        if pa.types.is_binary(image.type) or pa.types.is_large_binary(image.type):
            raw = pc.equal(pc.binary_length(image), pixels)
            png = pc.equal(pc.binary_slice(image, 0, len(PNG_MAGIC)), pa.scalar(PNG_MAGIC, image.type))
            fast = pc.fill_null(pc.and_(pc.and_(fast, raw), pc.invert(png)), False)
        else:
            fast = pc.and_(fast, pa.scalar(False))
        quick = batch.filter(fast)
        if quick.num_rows:
            count = quick.num_rows
            yield _batch(
                {
                    "kind": _repeat(OK, count, pa.string()),
                    "split": quick.column(2),
                    "pixels": quick.column(0).cast(pa.binary()),
                    "label": quick.column(1).cast(pa.int64()),
                    "file": quick.column(3),
                    "row": quick.column(4).cast(pa.int64()),
                },
                count,
            )
        rest = batch.filter(pc.invert(fast))
        if rest.num_rows:
            rows = [check_row(values, shape) for values in zip(*rest.to_pydict().values(), strict=True)]
            names = _arrow_schema(ROW_SCHEMA).names
            yield _batch({name: [row[i] for row in rows] for i, name in enumerate(names)}, len(rows))


def check_row(values: Sequence[Any], shape: Sequence[int]) -> tuple[Any, ...]:
    """A Parquet row ``(image, label, split, file, row)`` as a row of :data:`ROW_SCHEMA`."""
    image, label, split, file, row = values
    pixels, problem = decode_image(image, shape)
    if problem is None and (label is None or not 0 <= label < datasets.NUM_CLASSES):
        problem = f"label {label} is outside 0..{datasets.NUM_CLASSES - 1}"
    if problem is None and split is not None and split not in datasets.SPLITS:
        problem = f"split {split!r} is neither of {', '.join(datasets.SPLITS)}"
    if problem is not None:
        raw = bytes(image) if isinstance(image, bytes | bytearray) else None
        return (REJECT, split, None, label, file, row, problem, raw)
    return (OK, split, pixels, int(label), file, row, None, None)


def decode_image(image: Any, shape: Sequence[int]) -> tuple[bytes | None, str | None]:
    """(raw pixels, None) or (None, what is wrong with ``image``)."""
    pixels = int(np.prod(shape))
    if image is None:
        return None, "image is null"
    if isinstance(image, bytes | bytearray):
        if bytes(image[:8]) == PNG_MAGIC:
            return _decode_png(bytes(image), shape)
        if len(image) == pixels:
            return bytes(image), None
        return None, f"image holds {len(image)} bytes: neither a PNG nor {pixels} raw pixels"
    values = list(image)
    if len(values) != pixels:
        return None, f"image has {len(values)} pixels, expected {pixels} ({shape[0]}x{shape[1]})"
    if any(v is None or not 0 <= v <= 255 for v in values):
        return None, "image has pixel values outside 0..255"
    return bytes(values), None


def _decode_png(data: bytes, shape: Sequence[int]) -> tuple[bytes | None, str | None]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != (shape[1], shape[0]):
                return None, f"PNG is {image.size[0]}x{image.size[1]}, expected {shape[1]}x{shape[0]}"
            grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        return None, f"image bytes are not a readable PNG ({error})"
    return grey.tobytes(), None


def shard_numbers(splits: Any, hashes: Any, starts: Mapping[str, Sequence[bytes]]) -> Any:
    """The shard number of each record (its ``split`` and 32-byte ``hash``), given the hash of the
    first record of each shard of each split (``starts``, in order)."""
    import pyarrow as pa

    keys = pixel_array(hashes, HASH_BYTES).view(f"S{HASH_BYTES}").reshape(-1)
    names = np.asarray(splits.to_pylist(), dtype=object)
    numbers = np.zeros(len(keys), np.int64)
    for split, firsts in starts.items():
        mine = names == split
        numbers[mine] = np.searchsorted(np.asarray(firsts, f"S{HASH_BYTES}"), keys[mine], side="right") - 1
    return pa.array(numbers)


def write_shard(
    key: tuple[Any, ...], table: Any, *, output: str, shape: Sequence[int], num_classes: int
) -> Any:
    """Writes one group of records (``split``, ``shard``; columns ``hash``, ``pixels``, ``label``) as
    shard number ``shard`` of ``output/split``, records in hash order, one of each hash; one row of
    :data:`RESULT_SCHEMA`: the manifest entry (JSON) and statistics, or the one-line reason the
    storage refused it (a task's exception would reach the driver as a traceback)."""
    import pyarrow as pa

    split, index = key[0].as_py(), key[1].as_py()
    table = table.sort_by("hash")
    keys = pixel_array(table.column("hash"), HASH_BYTES)
    table = table.filter(np.concatenate([[True], (keys[1:] != keys[:-1]).any(axis=1)]))  # duplicates
    images = pixel_array(table.column("pixels"), int(np.prod(shape))).reshape(-1, *shape)
    labels = table.column("label").to_numpy().astype(np.uint8)
    data = encode_shard(images, labels)
    entry = shard_entry(index, data)
    result: dict[str, list[Any]] = {"split": [split], "shard": [index]}
    try:
        storage.publish_bytes(storage.join(output, split, entry.file), data)
    except WorkloadError as error:
        result["error"] = [str(error)]
    else:
        wide = images.astype(np.int64)
        result["entry"] = [json.dumps(entry.to_json())]
        result["class_counts"] = [np.bincount(labels, minlength=num_classes).tolist()]
        result["pixel_sum"] = [int(wide.sum())]
        result["pixel_squares"] = [int((wide * wide).sum())]
    schema = _arrow_schema(RESULT_SCHEMA)
    return pa.Table.from_pydict({name: result.get(name, [None]) for name in schema.names}, schema=schema)
