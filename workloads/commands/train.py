"""Train one model variant on shards, on one worker or many.

In a cluster each worker runs this command and learns its place from the environment the training
operator injects (TF_CONFIG for a TFJob; RANK/WORLD_SIZE/MASTER_ADDR for a PyTorchJob). Locally,
--local-workers N starts N worker processes on 127.0.0.1 with the same environment and restarts the
group if a worker dies. With --checkpoint-dir, a restarted run resumes from its last checkpoint.
Exit codes: 0 done; 1 bad input (permanent); 2 bad flags; 138 a peer was lost (retry).
"""

from __future__ import annotations

from workloads.training import get_trainer
from workloads.training.config import TrainConfig
from workloads.training.local_job import launch_local

HELP = "train a model (MultiWorkerMirroredStrategy; multi-process locally with --local-workers)"
Config = TrainConfig


def run(config: Config) -> int:
    if config.local_workers > 1:
        launch_local(config)
        return 0
    return get_trainer(config.framework, config.strategy)(config)
