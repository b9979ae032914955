"""GPU paths of the DDP trainer: NCCL and mixed precision, chosen automatically. They run where a
GPU is (the `gpu` marker skips them elsewhere, saying why); the CPU tests cover everything else."""

import json
import shutil
import subprocess

import pytest

from tests.workloads.support import json_lines, run_workloads, subprocess_env
from workloads.training import trained_model

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def gpu_env() -> dict[str, str]:
    return {k: v for k, v in subprocess_env().items() if k != "CUDA_VISIBLE_DEVICES"}


def gpu_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def test_on_a_gpu_a_worker_uses_cuda_with_nccl_and_mixed_precision(small_dataset, tmp_path):
    result = run_workloads(
        "train", "--framework", "pytorch", "--strategy", "ddp", "--data", str(small_dataset),
        "--output", str(tmp_path / "model"), "--epochs", "2", "--metrics-port", "0", env=gpu_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (start,) = [r for r in json_lines(result.stderr) if r["msg"].startswith("PyTorch ")]
    assert start["backend"] == "nccl" and start["device"] == "cuda:0"
    record = trained_model.read_record(str(tmp_path / "model"))
    assert record.extra["device"] == "cuda" and record.extra["precision"] in {"bf16", "fp16"}
    assert record.history[-1]["mean_loss"] < record.history[0]["mean_loss"]


def test_two_gpu_workers_all_reduce_over_nccl_and_end_with_identical_weights(small_dataset, tmp_path):
    if gpu_count() < 2:
        pytest.skip(f"needs two GPUs (one per NCCL rank); {gpu_count()} here")
    result = run_workloads(
        "train", "--framework", "pytorch", "--strategy", "ddp", "--data", str(small_dataset),
        "--output", str(tmp_path / "model"), "--epochs", "2", "--metrics-port", "0", "--local-workers", "2",
        "--log-format", "json", env=gpu_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = json_lines(result.stderr)
    assert {r["backend"] for r in records if r["msg"].startswith("joined the process group")} == {"nccl"}
    digests = {r["weights_sha256"] for r in records if r["msg"] == "final weights"}
    record = json.loads((tmp_path / "model" / "training.json").read_text())
    assert digests == {record["weights_sha256"]} and record["world_size"] == 2
