"""Samples per second of the PyTorch trainer, and of its input path alone, on the same data and batch.

**Training** is our trainer as a job runs it: ``python -m workloads train --config FILE`` in a process
of its own, the config a validated :class:`TrainConfig` (``--framework pytorch --strategy ddp
--precision bf16``). The rate is read from rank 0's progress lines, as ``bench_torch`` does: from the
line at the end of the warm-up steps (CUDA and cuDNN start-up, the first autocast) to the last one,
so it counts everything a step costs in the loop, the batches' reading and copying included.

**The input-bound limit** is the same configuration's batches (``runs.worker_batches``: shards,
shuffle windows, per-worker blocks) through ``torch_batches`` onto the same device, with no model:
what the loop could reach if a step cost nothing. Timed the same way, after the same warm-up steps;
the median of a few passes.

On one GPU the trainer runs with world size 1: the rank's own path, without the DDP wrapper's
all-reduce (one GPU cannot hold two NCCL ranks, and gloo would move the work to the CPU).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any

from tests.bench.run import ROOT
from tests.workloads.support import json_lines
from workloads.training.config import TrainConfig

PRECISION = "bf16"


@dataclasses.dataclass(frozen=True)
class Sizes:
    records: int  # synthetic Fashion-MNIST training records
    shard_size: int
    batch_sizes: tuple[int, ...]  # global batch sizes, each measured for every model
    warmup_steps: int  # steps before the clock starts (also the progress-line interval)
    timed_steps: int  # at least this many steps are timed (whole epochs are run)
    reader_passes: int  # the reader's rate is the median of this many passes


# About 1 minute of start-up and 5-10 s of steps per training run on the H200: 6 runs, the reader,
# the data and the gpu-marked tests fit well inside 8 minutes.
GPU_SIZES = Sizes(
    records=60_000,
    shard_size=4096,
    batch_sizes=(512, 4096),
    warmup_steps=10,
    timed_steps=200,
    reader_passes=3,
)
# The rehearsal: every step of the run, in seconds (each training process still starts PyTorch and Keras).
CPU_SIZES = Sizes(
    records=128, shard_size=64, batch_sizes=(32,), warmup_steps=1, timed_steps=3, reader_passes=2
)


def make_data(workdir: pathlib.Path, sizes: Sizes) -> str:
    """Synthetic Fashion-MNIST shards under ``workdir`` (memoised by the ingest); the dataset's URL."""
    from workloads.data import datasets

    url = str(workdir / "data")
    datasets.ingest_synthetic(
        url, train_records=sizes.records, test_records=0, seed=0, shard_size=sizes.shard_size
    )
    return url


def train_config(data: str, workdir: pathlib.Path, model: str, batch_size: int, sizes: Sizes) -> TrainConfig:
    """What the trainer runs for one (model, batch size): enough whole epochs for the timed steps."""
    steps_per_epoch = sizes.records // batch_size
    return TrainConfig(
        data=data,
        output=str(workdir / "models" / f"{model}-{batch_size}"),
        framework="pytorch",
        strategy="ddp",
        model=model,
        batch_size=batch_size,
        epochs=math.ceil((sizes.warmup_steps + sizes.timed_steps) / steps_per_epoch),
        precision=PRECISION,
        log_every=sizes.warmup_steps,
        metrics_port=0,
        cache_dir=str(workdir / "cache"),
    )


def training_rate(
    config: TrainConfig, env: dict[str, str], log: pathlib.Path, timeout: float
) -> dict[str, Any]:
    """One training run's steady samples/s, device and precision; ``error`` instead when it failed."""
    from workloads.core import settings

    config_file = pathlib.Path(config.output).with_suffix(".json")
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(settings.to_mapping(config)))
    argv = [sys.executable, "-m", "workloads", "train", "--config", str(config_file), "--log-format", "json"]
    try:
        run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr or b""
        _append(log, config, stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr)
        return {"error": f"stopped after {timeout:.0f} s (the run's time budget)"}
    _append(log, config, run.stderr)
    records = json_lines(run.stderr)
    if run.returncode != 0:
        errors = [r["msg"] for r in records if r.get("level") == "error"] or run.stderr.strip().splitlines()
        return {"error": f"exit {run.returncode}: {(errors or ['no output'])[-1][:300]}"}
    return _steady_rate(records, config.batch_size)


def _steady_rate(records: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    started = [r for r in records if r.get("msg", "").startswith("PyTorch ")]
    progress = [r for r in records if r.get("msg", "").startswith("step ") and r.get("rank") == 0]
    if not started or len(progress) < 2:
        return {"error": f"the trainer logged {len(progress)} progress line(s); 2 are needed to time steps"}
    first, last = progress[0], progress[-1]
    seconds = _seconds(last["ts"]) - _seconds(first["ts"])
    steps = last["step"] - first["step"]
    return {
        "samples_per_second": round(steps * batch_size / seconds, 1),
        "timed_steps": steps,
        "timed_seconds": round(seconds, 3),
        "device": started[0]["device"],
        "precision": started[0]["precision"],
        "final_loss": last["loss"],
    }


def reader_rate(config: TrainConfig, device: str, sizes: Sizes) -> dict[str, Any]:
    """The input-bound limit: ``config``'s batches onto ``device``, no model (module docstring)."""
    import torch

    from workloads.training import runs

    url, data = runs.open_training_data(config)
    batches, total_steps = runs.worker_batches(config, url, data)
    target = torch.device(device)
    rates = [
        _reader_pass(batches, config.epochs, sizes.warmup_steps, target) for _ in range(sizes.reader_passes)
    ]
    return {
        "samples_per_second": round(statistics.median(rates), 1),
        "passes": [round(rate, 1) for rate in rates],
        "timed_steps": total_steps - sizes.warmup_steps,
        "device": str(target),
    }


def _reader_pass(batches: Any, epochs: int, warmup_steps: int, device: Any) -> float:
    """Samples/s of one pass over ``epochs``, timed from the end of the warm-up steps, as training is."""
    import torch

    from workloads.data.torch_adapter import torch_batches

    def settled() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    step, began = 0, 0.0
    for epoch in range(epochs):
        for _images, _labels in torch_batches(batches.batches(epoch), device):
            step += 1
            if step == warmup_steps:
                began = settled()
    return (step - warmup_steps) * batches.per_worker_batch / (settled() - began)


def _append(log: pathlib.Path, config: TrainConfig, text: str) -> None:
    with log.open("a") as handle:
        handle.write(f"=== {config.model}, batch {config.batch_size}\n{text}\n")


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()
