"""Training throughput with one and two MultiWorkerMirroredStrategy workers, and the demo's wall time.

Same data, model, global batch and epochs in both runs; the two workers are local processes on
127.0.0.1 sharing the machine's cores (one TensorFlow thread each; the single worker gets them all).
Throughput is measured between the first and the last progress line of worker 0 (steady state:
start-up and graph tracing excluded). The demo is `python -m workloads pipeline` with its defaults,
from an empty work directory, exactly what `make demo` runs.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECORDS = 6000
EPOCHS = 3
BATCH = 64
MODEL = "plain"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSTACK_") and k != "TF_CONFIG"}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return env


def _steady_rate(lines: list[dict]) -> tuple[float, float]:
    """(samples/s for the whole job, seconds) between worker 0's first and last progress lines."""
    progress = [r for r in lines if r.get("msg", "").startswith("step ") and r.get("rank") == 0]
    first, last = progress[0], progress[-1]
    seconds = _ts(last) - _ts(first)
    return (last["step"] - first["step"]) * BATCH / seconds, seconds


def _ts(record: dict) -> float:
    import datetime

    return datetime.datetime.fromisoformat(record["ts"]).timestamp()


def _train(workdir: pathlib.Path, workers: int) -> tuple[float, float, float]:
    output = workdir / f"model-{workers}"
    argv = [
        sys.executable, "-m", "workloads", "train", "--data", str(workdir / "data"), "--output", str(output),
        "--model", MODEL, "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--log-every", "10",
        "--metrics-port", "0", "--local-workers", str(workers), "--log-format", "json",
    ]  # fmt: skip
    began = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    rate, seconds = _steady_rate(records)
    return rate, seconds, wall


def _demo(workdir: pathlib.Path) -> tuple[float, str]:
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "workloads", "pipeline", "--workdir", str(workdir / "demo")],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - began
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    stages = re.search(r"Pipeline finished in .*\((.*)\)\.", result.stdout)
    return wall, stages.group(1) if stages else "?"


def run(workdir: pathlib.Path) -> str:
    import shutil

    from workloads.data import datasets

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    datasets.ingest_synthetic(
        str(workdir / "data"), train_records=RECORDS, test_records=1000, seed=0, shard_size=1024
    )
    load_before = os.getloadavg()[0]
    one = _train(workdir, 1)
    two = _train(workdir, 2)
    demo_wall, stages = _demo(workdir)
    load_after = os.getloadavg()[0]
    efficiency = two[0] / one[0] / 2
    return "\n".join(
        [
            "## Training throughput (MultiWorkerMirroredStrategy) and the demo",
            "",
            f"Load average while measuring: {load_before:.1f} -> {load_after:.1f} (the machine is shared). "
            f"Model `{MODEL}`, {RECORDS:,} synthetic records, global batch {BATCH}, {EPOCHS} epochs, CPU only.",
            "",
            "| workers | samples/s (steady) | speed-up | scaling efficiency | steady seconds | job wall time (s) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| 1 | {one[0]:,.0f} | 1.00x | 100% | {one[1]:.1f} | {one[2]:.1f} |",
            f"| 2 (local processes) | {two[0]:,.0f} | {two[0] / one[0]:.2f}x | {efficiency:.0%} | {two[1]:.1f} | {two[2]:.1f} |",
            "",
            "Both workers share the same cores here, so two workers cannot be faster than one: the figure "
            "shows the cost of the all-reduce over loopback gRPC (one per step) and of two processes "
            "competing for two cores, not the scaling on separate nodes. Job wall time includes process "
            "start-up (TensorFlow import, several seconds per worker) and exit.",
            "",
            "| demo (`make demo` defaults, empty work directory) | wall time |",
            "| --- | ---: |",
            f"| `python -m workloads pipeline` ({stages}) | {demo_wall:.0f} s |",
        ]
    )
