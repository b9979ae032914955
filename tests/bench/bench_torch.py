"""PyTorch DDP throughput with one and two workers next to TensorFlow MWMS, and recovery time.

Throughput: the same data, model, global batch and epochs for every run; every worker has one CPU
thread (``--threads 1``), so two workers on two cores could at best double one worker's rate.
Samples per second are measured between the first and the last progress line of rank 0 (steady
state: start-up, graph tracing and exit excluded). One worker is a single process; two workers are
two torchrun elastic agents (PyTorch) or two processes with ``TF_CONFIG`` (TensorFlow), all on
127.0.0.1. Horovod's figure is the one its authors publish: about 90% scaling efficiency for
Inception V3 and ResNet-101 on hundreds of GPUs over a fast network (the Horovod README and
Sergeev & Del Balso, 2018); it is the yardstick for a good all-reduce, not a like-for-like run.

Recovery: a two-worker elastic job is started; once a checkpoint is committed, agent 1's worker is
killed with SIGKILL; the clock runs from the kill to rank 0's first completed step after the
restart, with the stages in between taken from the workers' log timestamps.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECORDS = 6000
EPOCHS = 3
BATCH = 64
MODEL = "plain"
RECOVERY_RUNS = 3
HOROVOD_EFFICIENCY = 0.90


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSTACK_") and k != "TF_CONFIG"}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    return env


def _ts(record: dict) -> float:
    return datetime.datetime.fromisoformat(record["ts"]).timestamp()


def _records(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _train(workdir: pathlib.Path, framework: str, workers: int) -> tuple[float, float]:
    """(samples/s of the whole job in steady state, job wall seconds)."""
    output = workdir / f"{framework}-{workers}"
    strategy = ["--framework", "pytorch", "--strategy", "ddp"] if framework == "pytorch" else []
    argv = [
        sys.executable, "-m", "workloads", "train", *strategy, "--data", str(workdir / "data"),
        "--output", str(output), "--model", MODEL, "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
        "--log-every", "10", "--metrics-port", "0", "--local-workers", str(workers), "--threads", "1",
        "--log-format", "json",
    ]  # fmt: skip
    began = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if result.returncode != 0:
        raise RuntimeError(f"{framework} x{workers} failed:\n{result.stderr[-3000:]}")
    progress = [
        r for r in _records(result.stderr) if r.get("msg", "").startswith("step ") and r.get("rank") == 0
    ]
    first, last = progress[0], progress[-1]
    return (last["step"] - first["step"]) * BATCH / (_ts(last) - _ts(first)), wall


def _recovery(workdir: pathlib.Path, attempt: int) -> dict[str, float]:
    """Seconds from a worker's SIGKILL to each stage of its group's recovery."""
    from workloads.core import logs
    from workloads.training.checkpoints import CheckpointStore
    from workloads.training.config import TrainConfig
    from workloads.training.local_job import launch_local

    root = workdir / f"recovery-{attempt}"
    config = TrainConfig(
        data=str(workdir / "data"), output=str(root / "model"), framework="pytorch", strategy="ddp",
        model=MODEL, epochs=2, batch_size=BATCH, checkpoint_dir=str(root / "checkpoints"),
        checkpoint_every=20, log_every=1, local_workers=2, threads=1, timeout=600,
    )  # fmt: skip
    killed: dict[str, float] = {}

    def watch(job) -> None:
        store = CheckpointStore(config.checkpoint_dir)
        while job.attempt == 1 and "at" not in killed:
            state = store.latest()
            if state is not None and state.step >= 40:
                worker = [r for r in _records((root / "logs" / "worker-1.log").read_text()) if "pid" in r]
                killed["at"] = time.time()
                os.kill(worker[0]["pid"], signal.SIGKILL)
                return
            time.sleep(0.02)

    def on_start(job) -> None:
        if job.attempt == 1:
            threading.Thread(target=watch, args=(job,), daemon=True).start()

    logs.setup("json", "WARNING")
    launch_local(config, log_dir=root / "logs", on_start=on_start)
    after = [r for r in _records((root / "logs" / "worker-0.log").read_text()) if _ts(r) > killed["at"]]

    def first(predicate) -> float:
        return min(_ts(r) for r in after if predicate(r.get("msg", ""))) - killed["at"]

    return {
        "restarted": first(lambda m: m.startswith("cluster:")),
        "joined": first(lambda m: m.startswith("joined the process group")),
        "restored": first(lambda m: m.startswith("resumed from checkpoint")),
        "first step": first(lambda m: m.startswith("step ")),
    }


def run(workdir: pathlib.Path) -> str:
    from workloads.data import datasets

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    datasets.ingest_synthetic(
        str(workdir / "data"), train_records=RECORDS, test_records=1000, seed=0, shard_size=1024
    )
    load_before = os.getloadavg()[0]
    rates = {(f, w): _train(workdir, f, w) for f in ("pytorch", "tensorflow") for w in (1, 2)}
    recoveries = [_recovery(workdir, attempt) for attempt in range(RECOVERY_RUNS)]
    load_after = os.getloadavg()[0]

    def efficiency(framework: str) -> float:
        return rates[(framework, 2)][0] / rates[(framework, 1)][0] / 2

    rows = []
    for framework, name in (("pytorch", "PyTorch DDP (gloo)"), ("tensorflow", "TensorFlow MWMS (gRPC)")):
        one, two = rates[(framework, 1)], rates[(framework, 2)]
        rows.append(
            f"| {name} | {one[0]:,.0f} | {two[0]:,.0f} | {two[0] / one[0]:.2f}x | {efficiency(framework):.0%} "
            f"| {efficiency(framework) / HOROVOD_EFFICIENCY:.2f} | {one[1]:.0f} / {two[1]:.0f} |"
        )
    stages = list(recoveries[0])
    recovery_rows = [
        f"| {stage} | {statistics.median(r[stage] for r in recoveries):.1f} | "
        f"{min(r[stage] for r in recoveries):.1f} | {max(r[stage] for r in recoveries):.1f} |"
        for stage in stages
    ]
    ddp_over_mwms = rates[("pytorch", 2)][0] / rates[("tensorflow", 2)][0]
    return "\n".join(
        [
            "## PyTorch DDP: scaling next to TensorFlow MWMS and Horovod, and recovery from a lost worker",
            "",
            f"Load average while measuring: {load_before:.1f} -> {load_after:.1f} (the machine is shared). "
            f"Model `{MODEL}`, {RECORDS:,} synthetic records, global batch {BATCH}, {EPOCHS} epochs, CPU only, "
            "one thread per worker.",
            "",
            "| trainer | 1 worker samples/s | 2 workers samples/s | speed-up | scaling efficiency "
            "| efficiency / Horovod's 90% | job wall time 1 / 2 workers (s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            f"| Horovod (published: Inception V3, ResNet-101, many GPUs) | | | | {HOROVOD_EFFICIENCY:.0%} | 1.00 | |",
            "",
            f"With two workers DDP moves {ddp_over_mwms:.2f}x the samples per second of MWMS on the same data "
            "and model. Steps of this small model take milliseconds, so the all-reduce of every step and "
            "the Python around it weigh far more than they would for the large models of Horovod's "
            "figure; job wall time includes start-up (torch and Keras imports, TensorFlow's graph tracing).",
            "",
            f"Recovery after SIGKILL of one of two DDP workers (seconds after the kill; median, min, max of "
            f"{RECOVERY_RUNS} runs; the agent restarts the group, which re-joins, restores the checkpoint "
            "and trains on):",
            "",
            "| stage | median | min | max |",
            "| --- | ---: | ---: | ---: |",
            *recovery_rows,
        ]
    )
