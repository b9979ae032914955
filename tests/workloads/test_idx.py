"""IDX files (Fashion-MNIST's format): read back exactly, and every corruption names file and offset."""

import gzip

import numpy as np
import pytest

from workloads.core.errors import DataError
from workloads.data import idx


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_read_back_exactly_gzipped_or_not(tmp_path, images, compress):
    path = tmp_path / "images.idx"
    idx.write_idx(path, images, compress=compress)
    assert np.array_equal(idx.read_idx(str(path)), images)


def test_streaming_reads_in_chunks_equal_the_whole(tmp_path, images):
    path = tmp_path / "images.idx.gz"
    idx.write_idx(path, images, compress=True)
    with idx.IdxReader(str(path)) as reader:
        assert reader.shape == (50, 28, 28)
        chunks = list(reader.chunks(16))
    assert [len(c) for c in chunks] == [16, 16, 16, 2]
    assert np.array_equal(np.concatenate(chunks), images)


def test_truncated_data_names_the_file_and_the_offset(tmp_path, images):
    path = tmp_path / "images.idx"
    idx.write_idx(path, images)
    data = path.read_bytes()
    path.write_bytes(data[:5000])
    with pytest.raises(DataError, match="truncated") as caught:
        idx.read_idx(str(path))
    assert caught.value.path == str(path)
    assert caught.value.offset == 5000


def test_truncated_header_names_the_offset(tmp_path):
    path = tmp_path / "labels.idx"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00")
    with pytest.raises(DataError) as caught:
        idx.read_idx(str(path))
    assert caught.value.offset == 6 and "dimension sizes" in str(caught.value)


def test_trailing_bytes_are_rejected_with_their_offset(tmp_path, images):
    path = tmp_path / "images.idx"
    idx.write_idx(path, images)
    expected_end = path.stat().st_size
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(DataError, match="unexpected bytes") as caught:
        idx.read_idx(str(path))
    assert caught.value.offset == expected_end


def test_a_file_that_is_not_idx_says_so(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello world, not an idx file")
    with pytest.raises(DataError, match="not an IDX file") as caught:
        idx.read_idx(str(path))
    assert caught.value.offset == 0


def test_a_truncated_gzip_stream_names_the_compressed_offset(tmp_path, images):
    path = tmp_path / "images.idx.gz"
    idx.write_idx(path, images, compress=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated") as caught:
        idx.read_idx(str(path))
    assert caught.value.offset == len(data) // 2


def test_corrupt_gzip_data_names_the_file(tmp_path, images):
    path = tmp_path / "images.idx.gz"
    raw = gzip.compress(idx_bytes(images), mtime=0)
    corrupted = bytearray(raw)
    corrupted[40:60] = b"\xff" * 20
    path.write_bytes(bytes(corrupted))
    with pytest.raises(DataError) as caught:
        idx.read_idx(str(path))
    assert caught.value.path == str(path)
    assert caught.value.offset is not None


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        idx.read_idx(str(tmp_path / "absent.idx"))


def idx_bytes(values):
    import struct

    return (
        struct.pack(">HBB", 0, 8, values.ndim)
        + struct.pack(f">{values.ndim}I", *values.shape)
        + values.tobytes()
    )
