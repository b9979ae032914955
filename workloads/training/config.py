"""The configuration every trainer takes: the ``train`` command's flags (see docs/interfaces.md)."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

from workloads import models
from workloads.core import tracking
from workloads.core.settings import CommandConfig, ConfigError, at_most, non_negative, option, positive
from workloads.data.sampling import DEFAULT_SHUFFLE_WINDOW, uneven_split
from workloads.data.shards import DEFAULT_CACHE_DIR
from workloads.training.metrics import METRICS_PORT


@dataclasses.dataclass(frozen=True)
class TrainConfig(CommandConfig):
    data: str = option(
        help="training data: a shard directory, or a dataset directory with train/ (URL or path)"
    )
    output: str = option(help="trained-model directory the chief writes (model.keras + training.json)")
    framework: Literal["tensorflow", "pytorch"] = option("tensorflow", help="training framework")
    strategy: Literal["multi-worker-mirrored", "parameter-server", "ddp"] = option(
        "multi-worker-mirrored",
        help="distribution strategy: multi-worker-mirrored or parameter-server (tensorflow), ddp (pytorch)",
    )
    model: str = option("plain", help="model variant", choices=tuple(models.MODELS))
    epochs: int = option(3, help="passes over the training data", check=positive)
    batch_size: int = option(64, help="global batch size (split evenly across workers)", check=positive)
    learning_rate: float = option(0.001, help="Adam learning rate", check=positive)
    seed: int = option(0, help="seed for initial weights and the per-epoch shuffle (same on every worker)")
    checkpoint_dir: str | None = option(
        None,
        help="checkpoint directory (URL or path; shared by all workers); none = no checkpoints, no resume",
    )
    checkpoint_every: int = option(
        100, help="steps between checkpoints (one is always written at the end)", check=positive
    )
    keep_checkpoints: int = option(3, help="checkpoints kept; older ones are deleted", check=positive)
    metrics_port: int = option(
        METRICS_PORT,
        help="Prometheus metrics port; 0 = any free port (logged)",
        check=lambda v: non_negative(v) or at_most(65535)(v),
    )
    run_name: str = option("", help="run label on metrics and logs; empty = the output directory's name")
    collective_timeout: float = option(
        120.0,
        help="seconds a collective may wait for a peer before the worker gives up (exit 138, retryable)",
        check=positive,
    )
    heartbeat_timeout: float = option(
        5.0,
        help="seconds without a heartbeat before a peer counts as dead (TF coordination service)",
        check=positive,
    )
    startup_timeout: float = option(
        300.0, help="seconds to wait for every worker to join at start-up", check=positive
    )
    threads: int = option(
        0,
        help="CPU threads per worker for TensorFlow or PyTorch ops; 0 = the framework's default",
        check=non_negative,
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "auto",
        help="PyTorch arithmetic: auto = bf16 autocast on GPUs that support it, else fp16 autocast with "
        "loss scaling, and fp32 on CPU; bf16/fp16 force autocast (fp16 adds a GradScaler)",
    )
    shuffle_window: int = option(
        DEFAULT_SHUFFLE_WINDOW, help="records shuffled together inside a worker's share", check=positive
    )
    cache_dir: str = option(str(DEFAULT_CACHE_DIR), help="local cache for remote shards")
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// data (sets AWS_ENDPOINT_URL)")
    log_every: int = option(50, help="steps between progress log lines", check=positive)
    local_workers: int = option(
        1,
        help="start this many workers here on 127.0.0.1, with the environment their Kubeflow job would "
        "give them (TF_CONFIG; PyTorch: torchrun elastic agents); 1 = this process",
        check=positive,
    )
    local_ps: int = option(
        1,
        help="local launch of --strategy parameter-server: ps tasks started beside the chief and the "
        "--local-workers workers",
        check=positive,
    )
    min_workers: int = option(
        0,
        help="PyTorch local launch: elastic minimum of workers (torchrun --nnodes MIN:MAX with MAX = "
        "--local-workers); 0 = a fixed-size job",
        check=non_negative,
    )
    max_restarts: int = option(
        3,
        help="local launch: group restarts after a worker dies (PyTorch: also each torchrun agent's "
        "--max-restarts)",
        check=non_negative,
    )
    timeout: float = option(
        3600.0, help="local launch: seconds before the whole job is stopped", check=positive
    )
    tracking_uri: str | None = tracking.uri_option(
        "nothing is tracked; the chief records its run in the directory above --output (a search's "
        "trials are runs of the search instead)"
    )

    def validate(self) -> None:
        if self.strategy == "ddp" and self.framework != "pytorch":
            raise ConfigError("--strategy", "ddp is PyTorch's strategy: pass --framework pytorch")
        if self.framework == "pytorch" and self.strategy != "ddp":
            raise ConfigError("--strategy", f"PyTorch trains with --strategy ddp, not {self.strategy}")
        if self.min_workers > self.local_workers:
            raise ConfigError(
                "--min-workers", f"{self.min_workers} is more than --local-workers {self.local_workers}"
            )
        problem = uneven_split(self.batch_size, self.local_workers, "workers (--local-workers)")
        if self.strategy != "parameter-server" and problem:
            raise ConfigError("--batch-size", problem)

    @property
    def effective_run_name(self) -> str:
        return self.run_name or pathlib.PurePosixPath(self.output.rstrip("/")).name or "train"
