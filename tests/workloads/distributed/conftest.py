"""Fixtures for the PyTorch DDP and parameter-server tests: real processes on 127.0.0.1.

The two trained runs are shared by the tests that read them (DDP: ``ddp_run``; parameter server:
``ps_run``); the tests using them share one xdist group so each run happens once.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

import pytest

from tests.workloads.support import ROOT, subprocess_env
from workloads.training import launcher
from workloads.training.config import TrainConfig
from workloads.training.local_job import launch_local


@dataclasses.dataclass(frozen=True)
class Run:
    config: TrainConfig
    result: launcher.LaunchResult
    logs: pathlib.Path

    @property
    def output(self) -> pathlib.Path:
        return pathlib.Path(self.config.output)


DDP_EPOCHS, DDP_BATCH = 2, 64


@pytest.fixture(scope="session")
def ddp_run(small_dataset, tmp_path_factory) -> Run:
    """Two DDP workers (torchrun elastic agents) train the batch-norm variant for two epochs."""
    root = tmp_path_factory.mktemp("ddp")
    config = TrainConfig(
        data=str(small_dataset),
        output=str(root / "model"),
        framework="pytorch",
        strategy="ddp",
        model="batchnorm",
        epochs=DDP_EPOCHS,
        batch_size=DDP_BATCH,
        learning_rate=0.003,
        checkpoint_dir=str(root / "checkpoints"),
        checkpoint_every=16,
        log_every=8,
        run_name="ddp-batchnorm",
        local_workers=2,
        timeout=400,
    )
    result = launch_local(config, log_dir=root / "logs")
    return Run(config, result, root / "logs")


@pytest.fixture(scope="session")
def ps_run(small_dataset, tmp_path_factory) -> Run:
    """One chief, one worker and one ps task train the plain variant asynchronously, tracked in a SQLite
    MLflow store (``root/mlflow.db``)."""
    root = tmp_path_factory.mktemp("ps")
    config = TrainConfig(
        data=str(small_dataset),
        output=str(root / "model"),
        strategy="parameter-server",
        model="plain",
        epochs=2,
        batch_size=64,
        learning_rate=0.003,
        checkpoint_dir=str(root / "checkpoints"),
        checkpoint_every=16,
        log_every=8,
        run_name="ps-plain",
        local_workers=1,
        local_ps=1,
        timeout=400,
        tracking_uri=f"sqlite:///{root}/mlflow.db",
    )
    result = launch_local(config, log_dir=root / "logs")
    return Run(config, result, root / "logs")


def run_python(script: str, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python -c script args`` from the checkout, output captured."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
