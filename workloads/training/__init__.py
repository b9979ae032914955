"""Training: one registry of trainers, keyed by (framework, strategy), all sharing one config.

A trainer is ``train(config: TrainConfig) -> int`` in its own module, imported only when chosen
(TensorFlow and PyTorch never load together). TensorFlow's MultiWorkerMirroredStrategy and
ParameterServerStrategy trainers and the PyTorch DDP trainer are registered here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from workloads.core.errors import WorkloadError

TRAINERS: dict[tuple[str, str], str] = {
    ("tensorflow", "multi-worker-mirrored"): "workloads.training.tf_mwms:train",
    ("tensorflow", "parameter-server"): "workloads.training.tf_parameter_server:train",
    ("pytorch", "ddp"): "workloads.training.torch_ddp:train",
}


def get_trainer(framework: str, strategy: str) -> Callable:
    target = TRAINERS.get((framework, strategy))
    if target is None:
        available = ", ".join(f"--framework {f} --strategy {s}" for f, s in TRAINERS)
        raise WorkloadError(
            f"no trainer for --framework {framework} --strategy {strategy}; available: {available}"
        )
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)
