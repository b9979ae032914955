"""Sharding across workers: disjoint, covering, equal step counts, reshuffled per epoch, resumable."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workloads.core.errors import DataError
from workloads.data.sampling import WorkerBatches, sequential_batches
from workloads.data.shards import ShardSet, ShardWriter


def make_dataset(path, count, shard_size):
    """Each image's first pixels encode its record number, so batches can be traced back to records."""
    images = np.zeros((count, 28, 28), np.uint8)
    ids = np.arange(count)
    images[:, 0, 0], images[:, 0, 1] = ids // 256, ids % 256
    labels = (ids % 10).astype(np.uint8)
    writer = ShardWriter(str(path), shard_size=shard_size)
    writer.write(images, labels)
    writer.commit()
    return ShardSet.open(str(path))


def ids_of(images):
    return images[:, 0, 0].astype(np.int64) * 256 + images[:, 0, 1]


def workers(data, world, batch, seed=7, **kwargs):
    return [
        WorkerBatches(data, global_batch_size=batch, rank=r, world_size=world, seed=seed, **kwargs)
        for r in range(world)
    ]


def test_workers_get_disjoint_subsets_that_cover_the_epoch(tmp_path):
    data = make_dataset(tmp_path, 1000, 64)
    per_worker = [w.record_ids(epoch=0) for w in workers(data, 2, 32)]
    assert not set(per_worker[0]) & set(per_worker[1])
    seen = np.concatenate(per_worker)
    assert len(seen) == 1000 // 32 * 32  # the 8-record remainder is dropped this epoch
    assert len(set(seen)) == len(seen)


def test_every_worker_takes_the_same_number_of_steps(tmp_path):
    data = make_dataset(tmp_path, 1003, 50)
    counts = [sum(1 for _ in w.batches(0)) for w in workers(data, 3, 30)]
    assert counts == [1003 // 30] * 3


def test_batches_hold_exactly_the_planned_records(tmp_path):
    data = make_dataset(tmp_path, 700, 64)
    for worker in workers(data, 2, 40):
        batches = list(worker.batches(epoch=1))
        got = np.concatenate([ids_of(b.images) for b in batches])
        assert np.array_equal(got, worker.record_ids(epoch=1))
        labels = np.concatenate([b.labels for b in batches])
        assert np.array_equal(labels, got % 10)
        assert all(b.images.shape == (20, 28, 28) for b in batches)


def test_the_order_changes_every_epoch_and_repeats_for_the_same_seed(tmp_path):
    data = make_dataset(tmp_path, 600, 64)
    (worker,) = workers(data, 1, 50)
    assert not np.array_equal(worker.record_ids(0), worker.record_ids(1))
    (again,) = workers(data, 1, 50)
    assert np.array_equal(worker.record_ids(1), again.record_ids(1))
    (other_seed,) = workers(data, 1, 50, seed=8)
    assert not np.array_equal(worker.record_ids(1), other_seed.record_ids(1))


def test_over_epochs_each_worker_sees_different_shards(tmp_path):
    data = make_dataset(tmp_path, 1280, 64)
    worker = workers(data, 2, 64)[0]
    shards_by_epoch = [frozenset(worker.record_ids(e) // 64) for e in range(4)]
    assert len(set(shards_by_epoch)) > 1


def test_a_worker_reads_only_its_share_of_the_shards(tmp_path):
    data = make_dataset(tmp_path, 2048, 64)
    worker = workers(data, 4, 64)[0]
    touched = set(worker.record_ids(0) // 64)
    assert len(touched) <= 32 // 4 + 1


def test_resuming_mid_epoch_continues_with_the_same_batches(tmp_path):
    data = make_dataset(tmp_path, 900, 64)
    worker = workers(data, 2, 30, shuffle_window=120)[1]
    full = [ids_of(b.images) for b in worker.batches(2)]
    resumed = [ids_of(b.images) for b in worker.batches(2, start_batch=11)]
    assert len(resumed) == len(full) - 11
    for a, b in zip(full[11:], resumed, strict=True):
        assert np.array_equal(a, b)


def test_steps_cross_epochs_with_the_data_position(tmp_path):
    data = make_dataset(tmp_path, 300, 64)
    (worker,) = workers(data, 1, 100)
    positions = [(b.epoch, b.index) for b in worker.steps(2, 7)]
    assert positions == [(0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]


def test_a_shuffle_window_bounds_how_far_records_move(tmp_path):
    data = make_dataset(tmp_path, 1000, 1000)
    (worker,) = workers(data, 1, 10, shuffle_window=100)
    ids = worker.record_ids(0)
    for window in range(10):
        chunk = ids[window * 100 : (window + 1) * 100]
        assert chunk.max() - chunk.min() < 100


def test_too_little_data_for_one_global_batch_is_a_clear_error(tmp_path):
    data = make_dataset(tmp_path, 10, 64)
    with pytest.raises(DataError, match="fewer than one global batch"):
        WorkerBatches(data, global_batch_size=32)


def test_the_global_batch_must_divide_among_workers(tmp_path):
    data = make_dataset(tmp_path, 100, 64)
    with pytest.raises(ValueError, match="multiple of the 3 workers"):
        WorkerBatches(data, global_batch_size=32, rank=0, world_size=3)


def test_sequential_batches_visit_every_record_once(tmp_path):
    data = make_dataset(tmp_path, 250, 64)
    got = np.concatenate([ids_of(images) for images, _ in sequential_batches(data, 32)])
    assert np.array_equal(got, np.arange(250))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(20, 400),
    shard_size=st.integers(7, 90),
    world=st.integers(1, 4),
    per_worker=st.integers(1, 9),
    window=st.integers(1, 500),
    epoch=st.integers(0, 5),
)
def test_sharding_rule_holds_for_any_sizes(
    tmp_path_factory, count, shard_size, world, per_worker, window, epoch
):
    batch = world * per_worker
    if count < batch:
        return
    data = make_dataset(tmp_path_factory.mktemp("d"), count, shard_size)
    ids = [w.record_ids(epoch) for w in workers(data, world, batch, shuffle_window=window)]
    steps = count // batch
    assert all(len(i) == steps * per_worker for i in ids)
    merged = np.concatenate(ids)
    assert len(set(merged)) == len(merged) == steps * batch
    assert merged.min() >= 0 and merged.max() < count
