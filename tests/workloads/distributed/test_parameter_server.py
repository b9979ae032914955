"""The parameter-server pattern for real: a chief, a worker and a ps task on 127.0.0.1, each a
process with the TF_CONFIG a TFJob with ps replicas would give it."""

import json

import numpy as np
import pytest

from tests.workloads.support import json_lines
from workloads.core import tracking
from workloads.training import trained_model
from workloads.training.checkpoints import CheckpointStore

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("trained-runs")]
STEPS = 2 * (2048 // 64)


def task_records(run, index):
    return json_lines((run.logs / f"worker-{index}.log").read_text())


def test_one_chief_one_worker_and_one_ps_complete_and_improve_the_loss(ps_run):
    record = trained_model.read_record(str(ps_run.output))
    assert (record.framework, record.strategy, record.world_size) == ("tensorflow", "parameter-server", 1)
    assert record.steps == STEPS and record.extra == {"ps_tasks": 1}
    losses = [epoch["mean_loss"] for epoch in record.history]
    assert losses[-1] < losses[0] * 0.8, losses
    chief, worker, ps = (task_records(ps_run, i) for i in range(3))
    assert any(r["msg"] == "ParameterServerStrategy: 1 worker(s), 1 ps task(s)" for r in chief)
    assert any(r["msg"].startswith("worker 0 serving") for r in worker)
    assert any(r["msg"].startswith("ps 0 serving") for r in ps)
    assert ps_run.result.attempts == 1


def test_the_ps_run_writes_the_same_trained_model_contract_as_every_trainer(ps_run):
    model = trained_model.load_model(str(ps_run.output))
    raw = np.random.default_rng(0).integers(0, 256, (4, 28, 28)).astype(np.float32)
    scores = np.asarray(model(raw, training=False))
    assert scores.shape == (4, 10) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    written = json.loads((ps_run.output / trained_model.METADATA_FILE).read_text())
    assert written["format"] == "mlstack.trained-model" and written["weights_sha256"]
    from workloads.training.runs import weights_digest

    assert weights_digest(np.asarray(w) for w in model.weights) == written["weights_sha256"]


def test_the_chief_checkpoints_the_parameter_servers_state_at_exact_steps(ps_run):
    latest = CheckpointStore(ps_run.config.checkpoint_dir).latest()
    assert (latest.step, latest.epoch, latest.batch) == (STEPS, 2, 0)
    assert latest.extra["strategy"] == "parameter-server"
    saved = [r["step"] for r in task_records(ps_run, 0) if r["msg"] == "checkpoint saved"]
    assert saved == [16, 32, 48, 64]


def test_the_ps_chief_tracks_its_own_run_with_every_step(ps_run):
    run_file = json.loads((ps_run.output.parent / tracking.RUN_FILE).read_text())
    client = tracking.Tracking.at(run_file["tracking_uri"]).client()
    run = client.get_run(run_file["run_id"])
    assert run.info.status == "FINISHED"
    assert (run.data.params["strategy"], run.data.params["world_size"]) == ("parameter-server", "1")
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in losses) == list(range(1, STEPS + 1))
    assert run.data.metrics["steps"] == STEPS
    beside_the_store = (ps_run.output.parent / "mlartifacts").as_uri()  # not ./mlruns where it ran
    assert run.info.artifact_uri.startswith(beside_the_store)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} == {
        "model/model.keras",
        "model/training.json",
    }
