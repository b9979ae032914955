"""Elastic fault tolerance for real: torchrun agents on 127.0.0.1, a worker or a whole agent killed
with SIGKILL mid-run, and the job finishing from its last checkpoint."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from tests.workloads.support import json_lines
from workloads.training import launcher, trained_model
from workloads.training.checkpoints import CheckpointStore
from workloads.training.config import TrainConfig
from workloads.training.local_job import launch_local

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("elastic")]
EPOCHS, BATCH, CHECKPOINT_EVERY = 3, 32, 10
TOTAL_STEPS = EPOCHS * (2048 // BATCH)


def elastic_config(dataset, root, **overrides) -> TrainConfig:
    settings = {
        "data": str(dataset),
        "output": str(root / "model"),
        "framework": "pytorch",
        "strategy": "ddp",
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "checkpoint_dir": str(root / "checkpoints"),
        "checkpoint_every": CHECKPOINT_EVERY,
        "log_every": 1,
        "local_workers": 2,
        "max_restarts": 3,
        "startup_timeout": 60,
        "collective_timeout": 30,
        "timeout": 240,
    }
    return TrainConfig(**{**settings, **overrides})


def generations(log_file) -> list[list[dict]]:
    """An agent's log split into the lives of its worker (each starts with a ``cluster:`` line)."""
    lives: list[list[dict]] = []
    for record in json_lines(log_file.read_text()):
        if record.get("msg", "").startswith("cluster:"):
            lives.append([])
        if lives:
            lives[-1].append(record)
    return lives


class Killer:
    """Kills something of agent 1 once the first checkpoint at or after ``after_step`` is committed."""

    def __init__(self, config: TrainConfig, log_dir, target: str, after_step: int = 20) -> None:
        self.store = CheckpointStore(config.checkpoint_dir)
        self.log_file = log_dir / "worker-1.log"
        self.target = target
        self.after_step = after_step
        self.checkpoint_step: int | None = None
        self.orphan: int | None = None
        self.at: float | None = None

    def on_start(self, job: launcher.LocalJob) -> None:
        if job.attempt == 1:
            threading.Thread(target=self._watch, args=(job,), daemon=True).start()

    def _watch(self, job: launcher.LocalJob) -> None:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            state = self.store.latest()
            if state is not None and state.step >= self.after_step:
                self.checkpoint_step = state.step
                self.at = time.time()
                if self.target == "worker":
                    (life,) = generations(self.log_file)
                    os.kill(life[0]["pid"], signal.SIGKILL)
                else:  # a node lost for good: the agent goes, and its worker must follow it
                    (life,) = generations(self.log_file)
                    self.orphan = life[0]["pid"]
                    os.killpg(job.workers[1].pid, signal.SIGKILL)
                return
            time.sleep(0.05)


def killed_iso(killer: Killer) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(killer.at + 1, datetime.UTC).isoformat(timespec="milliseconds")


def last_step_before(records: list[dict], moment: float) -> int:
    import datetime

    return max(
        r["step"]
        for r in records
        if r["msg"].startswith("step ") and datetime.datetime.fromisoformat(r["ts"]).timestamp() <= moment
    )


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_run_is_restarted_by_its_agent_and_the_job_resumes_from_its_checkpoint(
    small_dataset, tmp_path
):
    config = elastic_config(small_dataset, tmp_path)
    killer = Killer(config, tmp_path / "logs", "worker")
    result = launch_local(config, log_dir=tmp_path / "logs", on_start=killer.on_start)

    assert killer.at is not None, "the job finished before a checkpoint was seen"
    assert result.attempts == 1  # the agents recovered on their own; no group restart was needed
    record = trained_model.read_record(config.output)
    assert record.steps == TOTAL_STEPS and record.world_size == 2
    assert killer.checkpoint_step <= record.resumed_from_step < TOTAL_STEPS
    lives = [generations(tmp_path / "logs" / f"worker-{agent}.log") for agent in (0, 1)]
    assert [len(agent) for agent in lives] == [2, 2], "each agent restarted its worker once"
    reached = last_step_before(lives[0][0], killer.at + 1)
    assert reached - record.resumed_from_step <= CHECKPOINT_EVERY, "more than one interval of work lost"
    for agent in lives:
        second = agent[1]
        resumed = [r for r in second if r["msg"].startswith("resumed from checkpoint")]
        assert resumed and resumed[0]["step"] == record.resumed_from_step
        assert not any(r["msg"] == "no checkpoint yet: starting at step 0" for r in second)
    assert {r["weights_sha256"] for agent in lives for r in agent[1] if r["msg"] == "final weights"} == {
        record.weights_sha256
    }


@pytest.mark.timeout(300)
def test_when_an_agent_is_lost_for_good_an_elastic_job_finishes_on_the_remaining_node(
    small_dataset, tmp_path
):
    config = elastic_config(small_dataset, tmp_path, min_workers=1)
    killer = Killer(config, tmp_path / "logs", "agent")
    result = launch_local(config, log_dir=tmp_path / "logs", on_start=killer.on_start)

    assert killer.at is not None, "the job finished before a checkpoint was seen"
    assert result.attempts == 1
    with pytest.raises(ProcessLookupError):
        os.kill(killer.orphan, 0)  # the lost agent's worker died with it
    agent_lines = json_lines((tmp_path / "logs" / "worker-1.log").read_text())
    assert not [
        r for r in agent_lines if r.get("msg", "").startswith("step ") and r["ts"] > killed_iso(killer)
    ]
    record = trained_model.read_record(config.output)
    assert record.steps == TOTAL_STEPS and record.world_size == 1
    assert killer.checkpoint_step <= record.resumed_from_step < TOTAL_STEPS
    survivor = generations(tmp_path / "logs" / "worker-0.log")
    assert survivor[0][0]["world_size"] == 2 and survivor[-1][0]["world_size"] == 1
    data = [r for r in survivor[-1] if r["msg"] == "training data"]
    assert data[0]["per_worker_batch"] == BATCH  # the same global batch, now on one worker


@pytest.mark.timeout(300)
def test_the_generated_elastic_pytorchjob_trains_with_the_operators_settings_on_local_agents(
    small_dataset, tmp_path
):
    """The stack's PyTorchJob for an elastic run, its pods' command and the PET_* variables the operator
    gives them, run by the rehearsal's operator stand-in as two local agents (file:// URLs: the stand-in
    takes a path under /tmp for the pods' own /tmp)."""
    from infra.config import Images, Resources, TrainingJob
    from infra.specs import training
    from tests.support.argo_rehearsal import operate
    from tests.workloads.support import subprocess_env

    spec = TrainingJob(
        name="elastic-run", framework="pytorch", strategy="ddp", workers=2, min_workers=1, max_restarts=2,
        epochs=1, batch_size=BATCH, data=small_dataset.as_uri(), checkpoint_dir=f"{tmp_path.as_uri()}/checkpoints",
        output=f"{tmp_path.as_uri()}/model", resources=Resources(cpu="1", memory="2Gi"),
    )  # fmt: skip
    job = training.training_job(spec, Images("r.example/ml", "1"))
    status, why = operate(job, tmp_path / "pods", subprocess_env(LOGLEVEL="INFO"), timeout=240)

    assert status == {"replicaStatuses": {"Worker": {"succeeded": 2}}}, why
    record = trained_model.read_record(spec.output)
    assert record.world_size == 2 and record.steps == 2048 // BATCH
    for agent in (0, 1):  # torchrun's own account of how it was launched
        log = (tmp_path / "pods" / "logs" / f"worker-{agent}.log").read_text()
        settings = dict(re.findall(r"\] +(min_nodes|max_nodes|max_restarts|rdzv_backend) +: (\S+)", log))
        assert settings == {"min_nodes": "1", "max_nodes": "2", "max_restarts": "2", "rdzv_backend": "c10d"}
