"""Running one training configuration as a local multi-process job (``train --local-workers N``).

What the workers are given mirrors the Kubeflow job that would run them in the cluster:

- TensorFlow, MultiWorkerMirroredStrategy: N workers with ``TF_CONFIG`` (a TFJob);
- TensorFlow, parameter server: one chief, N workers and ``--local-ps`` ps tasks with ``TF_CONFIG``
  (a TFJob with ps replicas); the job is done when the chief is;
- PyTorch DDP: N torchrun elastic agents, one worker each, on a c10d rendezvous, with the command and
  the ``PET_*`` settings of an elastic PyTorchJob's pods; ``--min-workers`` below N lets the job go on
  when agents are lost.

One job at a time owns a local checkpoint directory: the launcher holds an exclusive ``flock`` on its
``.launcher.lock`` (which names the holder: pid and host) and passes the open file to every worker, so
the lock lasts while any process of the job lives; a second launcher on the same directory stops at
once with a :class:`WorkloadError` naming the holder. A remote checkpoint directory (``s3://...``) has
no such lock: in the cluster the training operator runs one job per name, which owns its directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pathlib
import socket
import sys
import tempfile
from collections.abc import Iterator

from workloads.core import logs, settings, storage
from workloads.core.errors import WorkloadError
from workloads.training import get_trainer, launcher
from workloads.training.config import TrainConfig

log = logging.getLogger(__name__)
KEPT_VARIABLES = ("MLSTACK_LOG_FORMAT", "MLSTACK_LOG_LEVEL")
LOCK_FILE = ".launcher.lock"  # in a local checkpoint directory, held by the job that owns it


def worker_threads(workers: int) -> int:
    """CPU threads per worker so that local workers share the cores instead of oversubscribing them."""
    return max(1, (os.cpu_count() or 1) // workers)


def worker_argv(config_file: pathlib.Path, threads: int) -> list[str]:
    """The command each worker runs: this config, as one worker, metrics on any free port."""
    return [
        sys.executable, "-m", "workloads", "train", "--config", str(config_file),
        "--local-workers", "1", "--metrics-port", "0", "--threads", str(threads),
    ]  # fmt: skip


def _env_style(config: TrainConfig) -> launcher.EnvStyle:
    if config.framework == "pytorch":
        return "torchrun"
    if config.strategy == "parameter-server":
        return launcher.parameter_server_style(config.local_workers, config.local_ps)
    return "tf_config"


def _elastic_agents(config: TrainConfig) -> launcher.ElasticAgents | None:
    if config.framework != "pytorch":
        return None
    return launcher.ElasticAgents(
        min_nodes=config.min_workers or config.local_workers,
        max_nodes=config.local_workers,
        max_restarts=config.max_restarts,
        join_timeout=config.startup_timeout,
        read_timeout=max(config.collective_timeout, 30.0),
        run_id=config.effective_run_name,
    )


def launch_local(
    config: TrainConfig, log_dir: pathlib.Path | None = None, on_start=None
) -> launcher.LaunchResult:
    """Runs ``config`` as ``config.local_workers`` processes (a local TFJob) and waits for them."""
    get_trainer(config.framework, config.strategy)  # fail now, not once per worker
    with (
        owning_checkpoint_dir(config.checkpoint_dir) as lock_fds,
        tempfile.TemporaryDirectory(prefix="mlstack-launch-") as tmp,
    ):
        config_file = pathlib.Path(tmp) / "train.json"
        config_file.write_text(json.dumps(settings.to_mapping(config)))
        processes = config.local_workers
        if config.strategy == "parameter-server":
            processes += 1 + config.local_ps  # the chief and the parameter servers
        argv = worker_argv(config_file, config.threads or worker_threads(config.local_workers))
        elastic = _elastic_agents(config)
        job = launcher.LocalJob(
            launcher.agent_command(argv) if elastic else argv,
            processes,
            env_style=_env_style(config),
            elastic=elastic,
            max_restarts=config.max_restarts,
            timeout=config.timeout,
            log_dir=log_dir,
            on_start=on_start,
            pass_fds=lock_fds,
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


@contextlib.contextmanager
def owning_checkpoint_dir(url: str | None) -> Iterator[tuple[int, ...]]:
    """Holds the lock of a local checkpoint directory for the block (module docstring); yields the
    file descriptors the workers must keep open (none for no or a remote checkpoint directory)."""
    if not url or not storage.is_local(url):
        yield ()
        return
    directory = storage.local_path(url)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(lock, 200, 0).decode("utf-8", "replace").strip() or "a process"
            raise WorkloadError(
                f"{directory} is in use by another local job ({holder} holds {path}); stop that job "
                "or use another --checkpoint-dir"
            ) from None
        os.ftruncate(lock, 0)
        os.pwrite(lock, f"launcher pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield (lock,)
    finally:
        os.close(lock)
