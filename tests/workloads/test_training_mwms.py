"""Multi-worker training for real: worker processes on 127.0.0.1, real kills, real files.

The clean two-worker run (loss goes down, identical weights) is checked on the pipeline's trials in
test_pipeline.py; here are the failure paths.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.workloads.support import ROOT, attempts, json_lines, run_workloads, subprocess_env
from workloads.training import cluster, launcher, trained_model
from workloads.training.checkpoints import CheckpointStore
from workloads.training.config import TrainConfig
from workloads.training.local_job import launch_local


def error_lines(stderr: str) -> list[str]:
    return [r["msg"] for r in json_lines(stderr) if r.get("level") == "error"]


@pytest.mark.slow
@pytest.mark.xdist_group("mwms")
def test_a_killed_worker_restarts_the_job_which_resumes_from_its_checkpoint(small_dataset, tmp_path):
    config = TrainConfig(
        data=str(small_dataset),
        output=str(tmp_path / "model"),
        checkpoint_dir=str(tmp_path / "checkpoints"),
        epochs=6,
        batch_size=32,
        checkpoint_every=10,
        log_every=10,
        local_workers=2,
        max_restarts=2,
        timeout=500,
    )
    total_steps = 6 * (2048 // 32)
    killed: dict[str, int] = {}

    def kill_worker_after_a_checkpoint(job: launcher.LocalJob) -> None:
        store = CheckpointStore(config.checkpoint_dir)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and job.attempt == 1:
            state = store.latest()
            if state is not None and state.step >= 20:
                killed["step"] = state.step
                os.kill(job.workers[1].pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    def on_start(job: launcher.LocalJob) -> None:
        if job.attempt == 1:
            threading.Thread(target=kill_worker_after_a_checkpoint, args=(job,), daemon=True).start()

    result = launch_local(config, log_dir=tmp_path / "logs", on_start=on_start)

    assert killed, "the first attempt finished before a checkpoint was seen"
    assert result.attempts == 2
    record = trained_model.read_record(config.output)
    assert record.steps == total_steps
    assert 0 < killed["step"] <= record.resumed_from_step < total_steps
    for worker in (0, 1):
        second = attempts(tmp_path / "logs" / f"worker-{worker}.log")[1]
        resumed = [r for r in second if r["msg"].startswith("resumed from checkpoint")]
        assert resumed and resumed[0]["step"] == record.resumed_from_step
        assert not any(r["msg"] == "no checkpoint yet: starting at step 0" for r in second)
    digests = {
        r["weights_sha256"]
        for w in (0, 1)
        for r in attempts(tmp_path / "logs" / f"worker-{w}.log")[1]
        if r["msg"] == "final weights"
    }
    assert digests == {record.weights_sha256}


@pytest.mark.slow
@pytest.mark.xdist_group("mwms")
def test_a_frozen_peer_ends_the_survivor_with_the_retryable_exit_code(small_dataset, tmp_path):
    """SIGSTOP keeps the peer's sockets open, so only heartbeats and collective timeouts can notice."""
    addresses = [f"127.0.0.1:{port}" for port in launcher.free_ports(2)]
    workers, outputs = [], [[], []]
    for index in range(2):
        env = subprocess_env(TF_CONFIG=cluster.tf_config_for(addresses, index))
        argv = [
            sys.executable, "-m", "workloads", "train", "--data", str(small_dataset),
            "--output", str(tmp_path / "model"), "--epochs", "200", "--batch-size", "32",
            "--metrics-port", "0", "--threads", "1", "--log-every", "5",
            "--heartbeat-timeout", "3", "--collective-timeout", "15",
        ]  # fmt: skip
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=lambda p=process, o=outputs[index]: o.extend(p.stdout), daemon=True).start()
        workers.append(process)
    try:
        deadline = time.monotonic() + 180
        while not any('"msg": "step ' in line for line in outputs[0]):
            assert time.monotonic() < deadline, "training never started:\n" + "".join(outputs[0][-20:])
            assert workers[0].poll() is None, "".join(outputs[0][-20:])
            time.sleep(0.2)
        os.kill(workers[1].pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        code = workers[0].wait(timeout=120)
        waited = time.monotonic() - frozen_at
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == 138, "".join(outputs[0][-30:])
    assert waited < 60
    assert any("lost contact with a peer" in line for line in outputs[0])


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        ("{'cluster': }", "TF_CONFIG is not valid JSON"),
        (
            json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 4}}),
            "lists 1 task",
        ),
        (
            json.dumps({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}),
            "host:port",
        ),
    ],
)
def test_a_wrong_tf_config_fails_fast_with_one_clear_line(tmp_path, small_dataset, tf_config, message):
    result = run_workloads(
        "train", "--data", str(small_dataset), "--output", str(tmp_path / "model"), "--metrics-port", "0",
        env=subprocess_env(TF_CONFIG=tf_config),
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "model").exists()


def test_an_unknown_model_is_rejected_with_the_valid_names(tmp_path, small_dataset):
    result = run_workloads(
        "train", "--data", str(small_dataset), "--output", str(tmp_path / "m"), "--model", "resnet"
    )
    assert result.returncode == 2
    assert "--model" in result.stderr and all(
        name in result.stderr for name in ("plain", "dropout", "batchnorm")
    )


def _with_file_size_limit(max_bytes: int, *args: str) -> subprocess.CompletedProcess:
    """``python -m workloads ARGS`` whose files cannot grow past ``max_bytes``: a write beyond fails with
    EFBIG (SIGXFSZ ignored). Set by a shell and prlimit between fork and exec, not a preexec_fn: Python code
    there can deadlock when this process has threads (other tests' servers)."""
    limited = ["sh", "-c", 'trap "" XFSZ; exec prlimit --fsize="$0" -- "$@"', str(max_bytes)]
    return subprocess.run(
        [*limited, sys.executable, "-m", "workloads", *args],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.xdist_group("mwms")
def test_a_checkpoint_write_that_fails_midway_exits_nonzero_and_the_previous_checkpoint_still_loads(
    small_dataset, tmp_path
):
    checkpoints = tmp_path / "checkpoints"
    common = [
        "train", "--data", str(small_dataset), "--output", str(tmp_path / "model"),
        "--checkpoint-dir", str(checkpoints), "--checkpoint-every", "16", "--batch-size", "64",
        "--metrics-port", "0",
    ]  # fmt: skip
    first = run_workloads(*common, "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert CheckpointStore(str(checkpoints)).latest().step == 32

    # The disk "fills up" while the next checkpoint is written: any file beyond 100 kB fails (EFBIG).
    failing = _with_file_size_limit(100_000, *common, "--epochs", "2")
    assert failing.returncode == 1
    (error,) = error_lines(failing.stderr)
    assert "checkpoint for step 48 could not be written" in error
    assert "the previous checkpoint (step 32) is intact" in error
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "latest.json",
        "step-000000016",
        "step-000000032",
    ]

    resumed = run_workloads(*common, "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert any(r["msg"] == "resumed from checkpoint at step 32" for r in json_lines(resumed.stderr))
    record = trained_model.read_record(str(tmp_path / "model"))
    assert (record.steps, record.resumed_from_step) == (64, 32)


@pytest.mark.slow
@pytest.mark.xdist_group("mwms")
def test_a_corrupt_shard_stops_training_naming_the_file_and_offset(small_dataset, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(small_dataset, dataset)
    shard = sorted((dataset / "train").glob("shard-*.bin"))[3]
    data = bytearray(shard.read_bytes())
    data[100_000] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = run_workloads(
        "train", "--data", str(dataset), "--output", str(tmp_path / "model"), "--metrics-port", "0"
    )
    assert result.returncode == 1
    (error,) = error_lines(result.stderr)
    assert shard.name in error and "at byte 0" in error and "checksum" in error
    assert not pathlib.Path(tmp_path / "model").exists()


@pytest.mark.gpu
@pytest.mark.slow
def test_on_a_gpu_node_training_places_the_replicas_on_gpus(small_dataset, tmp_path):
    env = {k: v for k, v in subprocess_env().items() if k != "CUDA_VISIBLE_DEVICES"}
    result = run_workloads(
        "train", "--data", str(small_dataset), "--output", str(tmp_path / "model"), "--metrics-port", "0",
        "--epochs", "2", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    strategy_lines = [
        r["msg"] for r in json_lines(result.stderr) if "MultiWorkerMirroredStrategy with" in r["msg"]
    ]
    assert strategy_lines and "GPU" in strategy_lines[0]
    record = trained_model.read_record(str(tmp_path / "model"))
    assert record.history[-1]["mean_loss"] < record.history[0]["mean_loss"]
