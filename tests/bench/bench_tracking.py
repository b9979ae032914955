"""Per-step tracking overhead: training samples/s with and without MLflow tracking, side by side.

The same one-worker `train` run (bench_training's model, data size, batch and epochs) alternately
without tracking and with the chief logging every step's loss and samples/s to an MLflow run
(``MLFLOW_RUN_ID``, as a search's trial does) in the local SQLite store the demo uses; throughput is
bench_training's steady rate, between worker 0's first and last progress lines.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys

from tests.bench.bench_training import BATCH, EPOCHS, MODEL, RECORDS, ROOT, _env, _steady_rate

ROUNDS = 3  # runs of each configuration


def _train(workdir: pathlib.Path, name: str, extra_env: dict[str, str]) -> float:
    argv = [
        sys.executable, "-m", "workloads", "train", "--data", str(workdir / "data"),
        "--output", str(workdir / name), "--model", MODEL, "--epochs", str(EPOCHS),
        "--batch-size", str(BATCH), "--log-every", "10", "--metrics-port", "0", "--log-format", "json",
    ]  # fmt: skip
    env = {**_env(), **extra_env}
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return _steady_rate([json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")])[0]


def _tracked(workdir: pathlib.Path, name: str, store) -> tuple[float, int]:
    """The steady rate of a run logging to a new MLflow run in ``store``, and the losses it logged."""
    from workloads.core import tracking

    client = store.client()
    run_id = client.create_run(tracking.experiment_id(store)).info.run_id
    rate = _train(workdir, name, {tracking.URI_VARIABLE: store.uri, tracking.RUN_VARIABLE: run_id})
    logged = len(client.get_metric_history(run_id, "loss"))
    client.set_terminated(run_id)
    return rate, logged


def _row(label: str, rates: list[float], baseline: float) -> str:
    mean = statistics.mean(rates)
    runs = ", ".join(f"{r:,.0f}" for r in rates)
    return f"| {label} | {mean:,.0f} | {runs} | {mean / baseline:.3f} |"


def run(workdir: pathlib.Path) -> str:
    import shutil

    from tests.workloads.mlflow_server import mlflow_server
    from workloads.core import tracking
    from workloads.data import datasets

    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "server").mkdir(parents=True)
    datasets.ingest_synthetic(
        str(workdir / "data"), train_records=RECORDS, test_records=100, seed=0, shard_size=1024
    )
    local = tracking.resolve(None, False, workdir)
    rates: dict[str, list[float]] = {"off": [], "sqlite": [], "server": []}
    with mlflow_server(workdir / "server") as uri:
        server = tracking.Tracking(uri)
        load_before = os.getloadavg()[0]
        for round_ in range(ROUNDS):  # alternating, so drifting load hits every configuration alike
            rates["off"].append(_train(workdir, f"off-{round_}", {}))
            rate, logged = _tracked(workdir, f"sqlite-{round_}", local)
            rates["sqlite"].append(rate)
            rate, logged = _tracked(workdir, f"server-{round_}", server)
            rates["server"].append(rate)
        load_after = os.getloadavg()[0]
    off = statistics.mean(rates["off"])
    how = f"chief, async `log_batch` per {tracking.FLUSH_EVERY} steps"
    return "\n".join(
        [
            "## Experiment tracking: per-step overhead (MLflow)",
            "",
            f"Load average while measuring: {load_before:.1f} -> {load_after:.1f} (the machine is shared). "
            f"Model `{MODEL}`, {RECORDS:,} synthetic records, global batch {BATCH}, {EPOCHS} epochs, one "
            f"worker, CPU only; {ROUNDS} runs of each, alternating; each tracked run logged {logged} "
            "per-step losses and samples/s (every step).",
            "",
            "| tracking | samples/s (steady, mean) | runs | relative |",
            "| --- | ---: | --- | ---: |",
            _row("off", rates["off"], off),
            _row(f"local SQLite store, in the worker's process ({how})", rates["sqlite"], off),
            _row(f"`mlflow server` on loopback ({how})", rates["server"], off),
            "",
            "The target is under 3% slower. With a local SQLite store the worker's own process writes the "
            "rows (SQLAlchemy, on a background thread that shares the interpreter lock with the training "
            "loop); with a server it only sends them. Run-to-run spread on a shared 2-core machine is of "
            "the order of the differences: read the ratios with the individual runs.",
        ]
    )
