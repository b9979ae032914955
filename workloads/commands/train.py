"""Train one model variant on shards, on one worker or many.

Strategies: --framework tensorflow with multi-worker-mirrored (synchronous) or parameter-server
(asynchronous; chief, workers and ps tasks), --framework pytorch with ddp (synchronous).

In a cluster each worker runs this command and learns its place from the environment the training
operator injects (TF_CONFIG for a TFJob; RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT for a PyTorchJob or
torchrun). Locally, --local-workers N starts N worker processes on 127.0.0.1 with the same
environment (PyTorch: N torchrun elastic agents; parameter-server: plus a chief and --local-ps ps
tasks, also with N = 1) and restarts them if a worker dies. With --checkpoint-dir, a restarted run
resumes from its last checkpoint.
Exit codes: 0 done; 1 bad input (permanent); 2 bad flags; 138 a peer was lost or never joined (retry);
130/143 stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import os

from workloads.training import get_trainer
from workloads.training.config import TrainConfig
from workloads.training.local_job import launch_local

HELP = "train a model (TensorFlow MWMS or parameter server, PyTorch DDP; locally with --local-workers)"
Config = TrainConfig


def run(config: Config) -> int:
    # A parameter-server job always has several tasks; without TF_CONFIG it is started here.
    needs_cluster = config.strategy == "parameter-server" and not os.environ.get("TF_CONFIG", "").strip()
    if config.local_workers > 1 or needs_cluster:
        launch_local(config)
        return 0
    return get_trainer(config.framework, config.strategy)(config)
