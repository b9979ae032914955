"""The shard format: exact round trips, a manifest that is the commit point, corruption found and located."""

import json

import numpy as np
import pytest

from workloads.core.errors import DataError
from workloads.data import shards
from workloads.data.shards import ShardCache, ShardSet, ShardWriter


def records(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count, dtype=np.uint8)


def write_dataset(url, images, labels, shard_size=100):
    writer = ShardWriter(str(url), shard_size=shard_size)
    writer.write(images, labels)
    writer.commit()
    return writer


def test_records_read_back_exactly_across_fixed_size_shards(tmp_path):
    images, labels = records(250)
    write_dataset(tmp_path, images, labels)
    data = ShardSet.open(str(tmp_path))
    assert [e.records for e in data.manifest.shards] == [100, 100, 50]
    assert len(data) == 250
    got_images, got_labels = data.read_all()
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)


def test_shards_are_memory_mapped_not_copied(tmp_path):
    write_dataset(tmp_path, *records(100))
    shard = ShardSet.open(str(tmp_path)).shard(0)
    assert isinstance(shard.images.base, np.memmap) or isinstance(shard.images.base.base, np.memmap)
    assert not shard.images.flags.writeable


def test_a_shard_not_in_the_manifest_does_not_exist_for_readers(tmp_path):
    images, labels = records(150)
    writer = ShardWriter(str(tmp_path), shard_size=100)
    writer.write(images[:100], labels[:100])  # commits shard 0 and the manifest
    # A writer that dies after writing shard 1 but before the manifest: simulate by writing the file only.
    orphan = tmp_path / "shard-00001-0123456789ab.bin"
    orphan.write_bytes(shards.encode_shard(images[100:], labels[100:]))
    data = ShardSet.open(str(tmp_path))
    assert len(data) == 100
    # Resuming removes the orphan and continues after the last committed shard.
    resumed = ShardWriter(str(tmp_path), shard_size=100)
    assert not orphan.exists()
    assert len(resumed.committed) == 1


def test_commit_records_caller_metadata_and_a_resumed_writer_reads_it_back(tmp_path):
    images, labels = records(20)
    writer = ShardWriter(str(tmp_path), shard_size=10)
    writer.append(images[:10], labels[:10])
    writer.commit({"offsets": {"0": 41, "1": 17}})
    writer.append(images[10:15], labels[10:15])  # never committed: lost on a crash, by design
    resumed = ShardWriter(str(tmp_path), shard_size=10)
    assert resumed.last_metadata == {"offsets": {"0": 41, "1": 17}}
    assert resumed.pending == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["shards"][0]["metadata"] == {"offsets": {"0": 41, "1": 17}}


def test_append_refuses_more_than_fits_in_the_open_shard(tmp_path):
    images, labels = records(12)
    writer = ShardWriter(str(tmp_path), shard_size=10)
    writer.append(images[:8], labels[:8])
    with pytest.raises(ValueError, match="room for 2"):
        writer.append(images[8:12], labels[8:12])


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((2, 28, 28), np.float32), np.zeros(2, np.uint8), "uint8"),
        (np.zeros((2, 27, 28), np.uint8), np.zeros(2, np.uint8), "shape"),
        (np.zeros((2, 28, 28), np.uint8), np.array([1, 10]), "labels must be in 0..9"),
    ],
)
def test_append_rejects_malformed_records(tmp_path, images, labels, message):
    with pytest.raises(ValueError, match=message):
        ShardWriter(str(tmp_path), shard_size=10).append(images, labels)


def test_resuming_with_a_different_shape_is_refused(tmp_path):
    write_dataset(tmp_path, *records(10))
    with pytest.raises(DataError, match="cannot resume"):
        ShardWriter(str(tmp_path), shard_size=7)


def test_a_flipped_byte_is_found_with_its_offset(tmp_path):
    write_dataset(tmp_path, *records(100))
    (path,) = tmp_path.glob("shard-*.bin")
    data = bytearray(path.read_bytes())
    data[70000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum") as caught:
        ShardSet.open(str(tmp_path)).shard(0)
    assert caught.value.path.endswith(path.name)
    assert caught.value.offset == 0  # the 1 MiB block holding byte 70000


def test_a_corrupt_byte_in_a_later_block_reports_that_block(tmp_path):
    write_dataset(tmp_path, *records(3000), shard_size=3000)
    (path,) = tmp_path.glob("shard-*.bin")
    data = bytearray(path.read_bytes())
    data[2_200_000] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as caught:
        ShardSet.open(str(tmp_path)).shard(0)
    assert caught.value.offset == 2 * shards.BLOCK_SIZE


def test_a_truncated_shard_names_the_file_and_where_it_ends(tmp_path):
    write_dataset(tmp_path, *records(100))
    (path,) = tmp_path.glob("shard-*.bin")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated") as caught:
        ShardSet.open(str(tmp_path)).shard(0)
    assert caught.value.offset == 1000


def test_a_malformed_manifest_names_itself(tmp_path):
    write_dataset(tmp_path, *records(10))
    (tmp_path / "manifest.json").write_text('{"format": "mlstack.shards", "version": 1}')
    with pytest.raises(DataError, match=r"manifest\.json.*malformed"):
        ShardSet.open(str(tmp_path))


def test_a_directory_without_a_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="workloads ingest"):
        ShardSet.open(str(tmp_path))


def test_replacing_a_dataset_keeps_the_old_one_readable_until_publish(tmp_path):
    write_dataset(tmp_path, *records(100, seed=1))
    new_images, new_labels = records(50, seed=2)
    writer = ShardWriter(str(tmp_path), shard_size=100, publish_each_commit=False, resume=False)
    writer.write(new_images, new_labels)
    writer.commit()
    assert len(ShardSet.open(str(tmp_path))) == 100  # old manifest still in force
    writer.publish()
    data = ShardSet.open(str(tmp_path))
    assert np.array_equal(data.read_all()[0], new_images)
    assert len(list(tmp_path.glob("shard-*.bin"))) == 1  # the old shard files are gone


def test_s3_shards_are_fetched_one_at_a_time_into_a_verified_cache(tmp_path, s3_bucket):
    images, labels = records(250)
    url = f"s3://{s3_bucket}/datasets/fm/train"
    write_dataset(url, images, labels)
    cache = ShardCache(tmp_path / "cache")
    data = ShardSet.open(url, cache=cache)
    assert np.array_equal(data.shard(1).images, images[100:200])
    assert len(list((tmp_path / "cache").glob("*.bin"))) == 1  # only the shard that was read
    got_images, got_labels = data.read_all()
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    assert len(list((tmp_path / "cache").glob("*.bin"))) == 3


def test_the_cache_keeps_within_its_byte_budget(tmp_path, s3_bucket):
    url = f"s3://{s3_bucket}/fm"
    write_dataset(url, *records(300))
    one_shard = shards.shard_bytes(100, (28, 28))
    cache = ShardCache(tmp_path / "cache", max_bytes=2 * one_shard)
    data = ShardSet.open(url, cache=cache)
    data.read_all()
    assert sum(p.stat().st_size for p in (tmp_path / "cache").glob("*.bin")) <= 2 * one_shard


def test_a_corrupt_remote_shard_never_enters_the_cache(tmp_path, s3_bucket):
    import boto3

    url = f"s3://{s3_bucket}/fm"
    writer = write_dataset(url, *records(100))
    key = f"fm/{writer.committed[0].file}"
    client = boto3.client("s3")
    body = bytearray(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    body[500] ^= 0xFF
    client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(body))
    with pytest.raises(DataError, match="checksum") as caught:
        ShardSet.open(url, cache=ShardCache(tmp_path / "cache")).shard(0)
    assert caught.value.path.startswith("s3://")
    assert not list((tmp_path / "cache").glob("*.bin"))
