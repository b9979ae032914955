"""Running one training configuration as a local multi-process job (``train --local-workers N``)."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sys
import tempfile

from workloads import launcher, logs, settings
from workloads.training import get_trainer
from workloads.training.config import TrainConfig

log = logging.getLogger(__name__)
KEPT_VARIABLES = ("MLSTACK_LOG_FORMAT", "MLSTACK_LOG_LEVEL")


def worker_threads(workers: int) -> int:
    """CPU threads per worker so that local workers share the cores instead of oversubscribing them."""
    return max(1, (os.cpu_count() or 1) // workers)


def worker_argv(config_file: pathlib.Path, threads: int) -> list[str]:
    """The command each worker runs: this config, as one worker, metrics on any free port."""
    return [
        sys.executable, "-m", "workloads", "train", "--config", str(config_file),
        "--local-workers", "1", "--metrics-port", "0", "--threads", str(threads),
    ]  # fmt: skip


def launch_local(
    config: TrainConfig, log_dir: pathlib.Path | None = None, on_start=None
) -> launcher.LaunchResult:
    """Runs ``config`` as ``config.local_workers`` processes (a local TFJob) and waits for them."""
    get_trainer(config.framework, config.strategy)  # fail now, not once per worker
    with tempfile.TemporaryDirectory(prefix="mlstack-launch-") as tmp:
        config_file = pathlib.Path(tmp) / "train.json"
        config_file.write_text(json.dumps(settings.to_mapping(config)))
        job = launcher.LocalJob(
            worker_argv(config_file, config.threads or worker_threads(config.local_workers)),
            config.local_workers,
            env_style="torchrun" if config.framework == "pytorch" else "tf_config",
            max_restarts=config.max_restarts,
            timeout=config.timeout,
            log_dir=log_dir,
            on_start=on_start,
            # The resolved config travels in the file; MLSTACK_* variables would override it.
            base_env={
                k: v for k, v in os.environ.items() if not k.startswith("MLSTACK_") or k in KEPT_VARIABLES
            },
        )
        result = job.run()
    log.info(
        "local job finished",
        extra=logs.fields(
            output=config.output, attempts=result.attempts, wall_seconds=round(result.wall_seconds, 1)
        ),
    )
    return result
