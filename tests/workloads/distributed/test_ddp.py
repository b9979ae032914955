"""PyTorch DDP for real: two torchrun elastic agents on 127.0.0.1 train on the shared shards, and the
result is an ordinary trained-model directory that selection and export take as they take a
TensorFlow one."""

import pathlib

import numpy as np
import pytest

from tests.workloads.distributed.conftest import DDP_BATCH, DDP_EPOCHS, run_python
from tests.workloads.support import json_lines
from workloads.data.shards import ShardSet
from workloads.training import trained_model

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("trained-runs")]
RECORDS = 2048  # small_dataset's training split


def worker_records(run, worker):
    return json_lines((run.logs / f"worker-{worker}.log").read_text())


def test_two_ddp_workers_lower_the_loss_and_end_with_identical_parameters(ddp_run):
    record = trained_model.read_record(str(ddp_run.output))
    assert (record.framework, record.strategy, record.world_size) == ("pytorch", "ddp", 2)
    assert record.steps == DDP_EPOCHS * (RECORDS // DDP_BATCH) and record.resumed_from_step == 0
    assert record.extra == {"backend": "gloo", "device": "cpu", "precision": "fp32"}
    losses = [epoch["mean_loss"] for epoch in record.history]
    assert [epoch["steps"] for epoch in record.history] == [RECORDS // DDP_BATCH] * DDP_EPOCHS
    assert losses[-1] < losses[0] * 0.8, losses
    digests = {
        r["weights_sha256"]
        for worker in (0, 1)
        for r in worker_records(ddp_run, worker)
        if r["msg"] == "final weights"
    }
    assert digests == {record.weights_sha256}
    for worker in (0, 1):
        records = worker_records(ddp_run, worker)
        data = [r for r in records if r["msg"] == "training data"]
        assert data and data[0]["per_worker_batch"] == DDP_BATCH // 2
        joined = [r for r in records if r["msg"].startswith("joined the process group")]
        assert joined and joined[0]["backend"] == "gloo"
    assert ddp_run.result.attempts == 1


def test_each_rank_trains_on_its_own_half_of_every_epoch(ddp_run):
    """DistributedSampler's contract, kept by WorkerBatches: disjoint, equal, reshuffled each epoch."""
    from workloads.data.sampling import WorkerBatches

    data = ShardSet.open(str(split(ddp_run, "train")))
    orders = {
        rank: [
            WorkerBatches(data, global_batch_size=DDP_BATCH, rank=rank, world_size=2, seed=0).record_ids(
                epoch
            )
            for epoch in range(DDP_EPOCHS)
        ]
        for rank in (0, 1)
    }
    for epoch in range(DDP_EPOCHS):
        first, second = orders[0][epoch], orders[1][epoch]
        assert len(first) == len(second) == RECORDS // 2
        assert not set(first) & set(second)
    assert not np.array_equal(orders[0][0], orders[0][1])


def split(run, name):
    return pathlib.Path(run.config.data) / name


def test_the_pytorch_model_and_its_exported_saved_model_agree_within_1e4(ddp_run, tmp_path):
    import tensorflow as tf

    images, _ = ShardSet.open(str(split(ddp_run, "test"))).read_all()
    np.save(tmp_path / "images.npy", images[:128])
    predict = (
        "import sys, numpy as np, keras, torch\n"
        "assert keras.backend.backend() == 'torch'\n"
        "from workloads.training import trained_model\n"
        "model = trained_model.load_model(sys.argv[1])\n"
        "images = torch.from_numpy(np.load(sys.argv[2]).astype('float32'))\n"
        "with torch.no_grad():\n"
        "    np.save(sys.argv[3], model(images, training=False).numpy())\n"
    )
    torch_side = run_python(
        predict,
        str(ddp_run.output),
        str(tmp_path / "images.npy"),
        str(tmp_path / "torch.npy"),
        KERAS_BACKEND="torch",
    )
    assert torch_side.returncode == 0, torch_side.stderr[-3000:]
    import keras

    from workloads.workflow.export import export_trained_model

    assert (
        keras.backend.backend() == "tensorflow"
    )  # this process exports, as `python -m workloads export` does
    export_trained_model(str(ddp_run.output), str(tmp_path / "saved"))
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    outputs = served(images=tf.constant(images[:128].astype(np.float32)))
    expected = np.load(tmp_path / "torch.npy")
    np.testing.assert_allclose(outputs["scores"].numpy(), expected, atol=1e-4, rtol=0)
    assert np.array_equal(outputs["class_ids"].numpy(), expected.argmax(axis=1))


def test_selection_ranks_pytorch_and_tensorflow_candidates_side_by_side(ddp_run, ps_run):
    from workloads.workflow import selection

    candidates = selection.find_candidates([str(ddp_run.output), str(ps_run.output)])
    rows = selection.select(candidates, ShardSet.open(str(split(ddp_run, "test"))), "accuracy")
    assert {row.run_name: row.framework for row in rows} == {
        "ddp-batchnorm": "pytorch",
        "ps-plain": "tensorflow",
    }
    assert [row.rank for row in rows] == [1, 2]
    assert rows[0].accuracy >= rows[1].accuracy and rows[1].accuracy > 0.3
    table = selection.render_table(rows, "accuracy")
    assert "pytorch" in table and "tensorflow" in table and "<- selected" in table


def test_the_chief_checkpointed_every_interval_and_kept_the_latest_ones(ddp_run):
    from workloads.training.checkpoints import CheckpointStore

    directory = pathlib.Path(ddp_run.config.checkpoint_dir)
    latest = CheckpointStore(str(directory)).latest()
    total = DDP_EPOCHS * (RECORDS // DDP_BATCH)
    assert (latest.step, latest.epoch, latest.batch) == (total, DDP_EPOCHS, 0)
    assert latest.extra["framework"] == "pytorch" and latest.extra["strategy"] == "ddp"
    assert sorted(p.name for p in directory.glob("step-*")) == [
        "step-000000032",
        "step-000000048",
        "step-000000064",
    ]
    assert sorted(p.name for p in (directory / latest.path / "torch").iterdir()) == [
        "state.pt",
        "state.pt.sha256",
    ]
