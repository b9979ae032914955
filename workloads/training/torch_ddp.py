"""Synchronous data-parallel training with PyTorch DistributedDataParallel.

**The model is the shared Keras 3 definition, run by the torch backend.** ``workloads.models`` is
written with backend-neutral Keras layers; under ``KERAS_BACKEND=torch`` a Keras model *is* a
``torch.nn.Module`` whose variables are ``torch.nn.Parameter``\\ s, so it is wrapped in DDP, trained
by a ``torch.optim`` optimizer under autocast like any module, and saved with ``model.save`` into the
same backend-neutral ``model.keras`` a TensorFlow run writes. We chose this over native torch
modules plus a weight transfer into the Keras model because a transfer is a second definition of
every model that must stay equal to the first, with layout traps of its own (NCHW against NHWC
changes the order of the flattened features the dense layer sees; batch-norm momentum and epsilon
use different conventions); here there is one definition, so ``select``, ``export`` and ``promote``
treat a PyTorch-trained model exactly like a TensorFlow-trained one and the exported SavedModel
computes what the trainer computed. The cost is Keras' per-layer Python overhead on small CPU steps
(see docs/benchmarks.md). ``KERAS_BACKEND`` is process-wide, so this trainer runs in its own process,
and TensorFlow is kept out of it: Keras imports TensorFlow whenever it is installed just to seed it
or to recognise its shapes while saving (seconds of start-up and hundreds of MB per worker for
nothing), and behaves exactly as in a torch-only installation when the import is refused. We seed
Python, NumPy and torch ourselves, which is what Keras' initialisers draw from.

**Data**: :class:`workloads.data.sampling.WorkerBatches`, the DistributedSampler-equivalent every
trainer uses: disjoint per-rank blocks, reshuffled each epoch from one seed, the same number of steps
on every rank, and a pure function of the global step, so a restarted group resumes mid-epoch.

**Fault tolerance**: rank 0 commits a checkpoint every ``--checkpoint-every`` steps through
:class:`CheckpointStore` (staging directory, rename, ``latest.json``): model variables, optimizer,
gradient scaler, RNG state and step (which fixes the data position), with a SHA-256 of the payload.
Every rank restores it when it starts, so a group restarted by torchrun's elastic agent, by the
local launcher or by a PyTorchJob continues instead of starting over. Batch-norm moving statistics
(updated per rank from its own batches; Keras keeps them as parameters DDP does not synchronise)
are averaged across ranks before each checkpoint and at the end. Every wait is bounded: joining by
``--startup-timeout``, each collective by ``--collective-timeout``; a lost peer ends the rank with
exit code 138 (retryable), a disagreement between ranks or a damaged checkpoint with exit code 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import logging
import os
import pathlib
import random
import sys
import time
from typing import Any

import numpy as np

from workloads import models
from workloads.core import logs, storage
from workloads.core.errors import CheckpointError, ClusterConfigError, WorkloadError
from workloads.data.sampling import uneven_split
from workloads.training import cluster, runs, torch_runtime
from workloads.training.checkpoints import CheckpointState
from workloads.training.config import TrainConfig
from workloads.training.metrics import TrainingMetrics

log = logging.getLogger(__name__)
FRAMEWORK = "pytorch"
STRATEGY = "ddp"
PAYLOAD = pathlib.Path("torch") / "state.pt"
PAYLOAD_DIGEST = pathlib.Path("torch") / "state.pt.sha256"
KERAS_EPSILON = 1e-7  # Keras' Adam epsilon, so both frameworks run the same optimiser
# Settings every rank must share (compared through the rendezvous store before training starts).
AGREED_SETTINGS = (
    "data",
    "model",
    "epochs",
    "batch_size",
    "learning_rate",
    "seed",
    "checkpoint_dir",
    "checkpoint_every",
    "precision",
    "output",
)


def train(config: TrainConfig) -> int:
    info = cluster.detect(os.environ)
    logs.bind(rank=info.rank, role=info.task_type)
    log.info("cluster: %s", info.describe(), extra=logs.fields(world_size=info.world_size, pid=os.getpid()))
    if info.source == "tf_config":
        raise ClusterConfigError(
            "TF_CONFIG is set, but PyTorch DDP takes its place in the job from RANK, WORLD_SIZE, "
            "MASTER_ADDR and MASTER_PORT (torchrun or a PyTorchJob); unset TF_CONFIG or use --framework tensorflow"
        )
    if problem := uneven_split(config.batch_size, info.world_size, "workers (WORLD_SIZE)"):
        raise ClusterConfigError(f"--batch-size: {problem}")
    return runs.run_with_metrics(
        config, FRAMEWORK, info.rank, lambda metrics: _Trainer(config, info, metrics)
    )


def use_torch_backend() -> None:
    """Selects Keras' torch backend for this process (it must happen before Keras is imported)."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "torch":
            raise WorkloadError(
                f"Keras is already loaded with the {keras.backend.backend()} backend in this process; "
                "PyTorch training needs its own process (run `python -m workloads train --framework pytorch`)"
            )
    if "tensorflow" in sys.modules:
        raise WorkloadError(
            "TensorFlow is already loaded in this process; PyTorch training needs its own process "
            "(run `python -m workloads train --framework pytorch`)"
        )
    os.environ["KERAS_BACKEND"] = "torch"
    if not any(isinstance(finder, _RefuseTensorFlow) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RefuseTensorFlow())
    # c10d logs every retry of a connection with a C++ stack trace; our errors say what happened.
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")


class _RefuseTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import tensorflow`` fail in a PyTorch worker, as in an installation without it.

    ``find_spec`` still answers (torch asks whether TensorFlow is installed, and it is); only loading
    the module fails, with the ``ModuleNotFoundError`` Keras expects of a missing optional module.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec: Any) -> None:
        raise ModuleNotFoundError(f"TensorFlow is kept out of PyTorch workers ({spec.name})", name=spec.name)

    def exec_module(self, module: Any) -> None:  # never reached: create_module refuses
        raise ModuleNotFoundError(module.__name__, name=module.__name__)


def seed_everything(seed: int) -> None:
    """What ``keras.utils.set_random_seed`` does for the torch backend, without importing TensorFlow."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Trainer:
    def __init__(self, config: TrainConfig, info: cluster.ClusterInfo, metrics: TrainingMetrics) -> None:
        self.config = config
        self.info = info
        self.metrics = metrics
        self.started = time.monotonic()
        self.distributed = info.world_size > 1

    def run(self) -> int:
        self._set_up_torch()
        doing = "joining the process group"
        try:
            if self.distributed:
                torch_runtime.join(
                    self.info,
                    self.placement.backend,
                    startup_timeout=self.config.startup_timeout,
                    collective_timeout=self.config.collective_timeout,
                    settings={name: getattr(self.config, name) for name in AGREED_SETTINGS},
                )
            doing = "training"
            self._train()
        except WorkloadError:
            raise
        except Exception as error:
            if self.distributed and torch_runtime.is_peer_failure(error):
                raise torch_runtime.peer_lost(error, doing) from None
            raise
        if self.distributed:
            torch_runtime.leave()
            self._exit()
        return 0

    def _set_up_torch(self) -> None:
        """Keras on the torch backend, the thread limits, this rank's device and precision, logged."""
        torch_runtime.follow_agent()
        use_torch_backend()
        import torch

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
            with contextlib.suppress(RuntimeError):  # allowed once, before any parallel work
                torch.set_num_interop_threads(self.config.threads)
        self.placement = torch_runtime.place(self.info.local_rank)
        self.precision = torch_runtime.precision_for(self.config.precision, self.placement)
        log.info(
            "PyTorch %s, %s, %s precision%s",
            torch.__version__,
            self.placement.describe(),
            self.precision.name,
            " with loss scaling" if self.precision.loss_scaling else "",
            extra=logs.fields(
                backend=self.placement.backend,
                device=str(self.placement.device),
                precision=self.precision.name,
                threads=torch.get_num_threads(),
            ),
        )

    def _exit(self) -> None:
        """Ends a finished worker at once, as the TensorFlow trainer does.

        Everything is written and every rank passed the final barrier; what remains is the
        interpreter's teardown of torch and Keras, seconds per worker that torchrun's agent (and the
        next job) would wait for.
        """
        self.metrics.close()
        runs.exit_now()

    def _train(self) -> None:
        """The epochs from the resumed step on, then the trained model and a last barrier."""
        start_step = self._set_up_training()
        step = start_step
        with runs.progress_bar(self.config, self.total_steps, start_step, is_chief=self.info.is_chief) as bar:
            report = runs.StepReporter(self.metrics, bar, self.total_steps, self.config.log_every)
            for epoch in range(start_step // self.batches.steps_per_epoch, self.config.epochs):
                step = self._train_one_epoch(epoch, step, report)
        self._finish(start_step, step, report.history)

    def _set_up_training(self) -> int:
        """This rank's data, the checkpoint store, the model and optimizer; returns the step to start at."""
        config = self.config
        data_url, data = runs.open_training_data(config)
        self.batches, self.total_steps = runs.worker_batches(
            config, data_url, data, rank=self.info.rank, world_size=self.info.world_size
        )
        self.store = runs.checkpoint_store(config)
        self.identity = runs.checkpoint_identity(FRAMEWORK, config, data.manifest)
        resume = self._read_checkpoint()  # before the model: a damaged one fails fast
        self._build_model()
        start_step = 0
        if resume is not None:
            start_step = self._restore(*resume)
            runs.log_resumed(self.store, resume[0], self.batches)
        self.metrics.record_resume(start_step)
        return start_step

    def _build_model(self) -> None:
        """The seeded model, its Adam optimizer and gradient scaler, wrapped in DDP when distributed."""
        import torch

        seed_everything(self.config.seed)
        self.model = model = models.build_model(self.config.model)
        trainable = [variable.value for variable in model.trainable_variables]
        self.optimizer = torch.optim.Adam(trainable, lr=self.config.learning_rate, eps=KERAS_EPSILON)
        self.scaler = torch.amp.GradScaler(self.placement.device.type, enabled=self.precision.loss_scaling)
        if self.distributed:
            device_ids = [self.placement.device.index] if self.placement.device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        else:
            self.network = model
        self.statistics = models.moving_statistics(model)

    def _train_one_epoch(self, epoch: int, step: int, report: runs.StepReporter) -> int:
        """This rank's batches of ``epoch`` from global ``step`` on, checkpointed on schedule.

        Returns the global step after the epoch.
        """
        from workloads.data.torch_adapter import torch_batches

        _, first_batch = self.batches.position(step)
        for images, labels in torch_batches(self.batches.batches(epoch, first_batch), self.placement.device):
            began = time.perf_counter()
            loss = self._train_step(images, labels)
            elapsed = time.perf_counter() - began
            step += 1
            report.step_done(step, epoch, loss, self.batches.per_worker_batch, elapsed)
            if self.store and runs.checkpoint_due(self.config, step, self.total_steps):
                self._save(step)
        return step

    def _train_step(self, images: Any, labels: Any) -> float:
        import keras
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        with torch_runtime.autocast(self.precision, self.placement):
            scores = self.network(images.to(torch.float32), training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, scores.to(torch.float32)).mean()
        if self.model.losses:
            loss = loss + sum(self.model.losses)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def _finish(self, start_step: int, step: int, losses: dict[int, list[float]]) -> None:
        """Statistics averaged, the history agreed across ranks, the chief writes the model; a barrier."""
        self._average_statistics()
        history = self._global_history(losses)
        digest = runs.weights_digest(self.model.get_weights())
        log.info("final weights", extra=logs.fields(step=step, weights_sha256=digest))
        if self.info.is_chief:
            self._write_model(start_step, step, history, digest)
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()  # every rank is past its last write (rank 0's model included)
        log.info("all workers done", extra=logs.fields(step=step))

    def _write_model(self, start_step: int, step: int, history: list[dict[str, float]], digest: str) -> None:
        runs.write_trained_model(
            self.config,
            self.model,
            framework=FRAMEWORK,
            strategy=STRATEGY,
            world_size=self.info.world_size,
            start_step=start_step,
            step=step,
            history=history,
            digest=digest,
            started=self.started,
            identity=self.identity,
            extra={
                "backend": self.placement.backend,
                "device": self.placement.device.type,
                "precision": self.precision.name,
            },
        )

    def _average_statistics(self) -> None:
        """Batch-norm moving statistics averaged across ranks (one all-reduce), as the TF trainer does."""
        if not (self.distributed and self.statistics):
            return
        import torch
        import torch.distributed as dist

        flat = torch.cat([v.value.detach().reshape(-1) for v in self.statistics])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)  # gloo has no AVG
        flat /= self.info.world_size
        offset = 0
        for variable in self.statistics:
            size = variable.value.numel()
            variable.assign(flat[offset : offset + size].reshape(variable.value.shape))
            offset += size

    def _global_history(self, losses: dict[int, list[float]]) -> list[dict[str, float]]:
        """Per-epoch mean loss over every rank's batches (one all-reduce at the end, none per step)."""
        if not self.distributed or not losses:
            return runs.epoch_history(losses)
        import torch
        import torch.distributed as dist

        epochs = sorted(losses)
        totals = torch.tensor(
            [[sum(losses[e]), len(losses[e])] for e in epochs],
            dtype=torch.float64,
            device=self.placement.device,
        )
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        return [
            {"epoch": e, "mean_loss": float(total / count), "steps": int(count) // self.info.world_size}
            for e, (total, count) in zip(epochs, totals.tolist(), strict=True)
        ]

    def _state(self) -> dict[str, Any]:
        import torch

        return {
            "variables": [(v.path, v.value.detach().cpu()) for v in self.model.variables],
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def _save(self, step: int) -> None:
        self._average_statistics()
        if not self.info.is_chief:
            return

        def write(directory: pathlib.Path) -> None:
            import torch

            payload = directory / PAYLOAD
            payload.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self._state(), payload)
            (directory / PAYLOAD_DIGEST).write_text(_sha256(payload) + "\n")

        epoch, batch = self.batches.position(step)
        self.store.save(step, epoch, batch, write, extra=self.identity)
        self.metrics.record_checkpoint()

    def _read_checkpoint(self) -> tuple[CheckpointState, dict[str, Any], str] | None:
        """The checkpoint to resume from, read and verified: (state, payload, where), or None."""
        store = self.store
        state = runs.latest_checkpoint(
            store, self.identity, total_steps=self.total_steps, is_chief=self.info.is_chief
        )
        if state is None:
            return None
        where = storage.join(store.url, state.path)
        with store.open(state) as directory:
            return state, self._read_payload(directory, where), where

    def _read_payload(self, directory: pathlib.Path, where: str) -> dict[str, Any]:
        import pickle

        import torch

        payload = directory / PAYLOAD
        try:
            expected = (directory / PAYLOAD_DIGEST).read_text().strip()
        except FileNotFoundError:
            raise CheckpointError(f"{where}: {PAYLOAD_DIGEST} is missing; {_damaged(where)}") from None
        if not payload.is_file():
            raise CheckpointError(f"{where}: {PAYLOAD} is missing; {_damaged(where)}")
        actual = _sha256(payload)
        if actual != expected:
            raise CheckpointError(
                f"{where}/{PAYLOAD}: SHA-256 is {actual[:12]}..., the checkpoint recorded {expected[:12]}...; "
                + _damaged(where)
            )
        try:
            return torch.load(payload, map_location=self.placement.device, weights_only=True)
        except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise CheckpointError(f"cannot restore {where}/{PAYLOAD}: {error}; {_damaged(where)}") from None

    def _restore(self, state: CheckpointState, payload: dict[str, Any], where: str) -> int:
        """Puts a verified checkpoint into the model, optimizer, scaler and RNG; returns its step."""
        import torch

        try:
            variables = payload["variables"]
            if len(variables) != len(self.model.variables):
                raise ValueError(
                    f"{len(variables)} variables saved, the model has {len(self.model.variables)}"
                )
            for variable, (path, value) in zip(self.model.variables, variables, strict=True):
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"{path} has shape {tuple(value.shape)}, the model {tuple(variable.shape)}"
                    )
                variable.assign(value.to(self.placement.device))
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scaler.load_state_dict(payload["scaler"])
            torch.set_rng_state(payload["torch_rng"].cpu())
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise CheckpointError(f"cannot restore {where}/{PAYLOAD}: {error}; {_damaged(where)}") from None
        self.metrics.record_checkpoint()
        return state.step


def _damaged(where: str) -> str:
    return (
        f"the checkpoint {where} is damaged; nothing was changed: move {where} aside and point "
        "latest.json at an earlier step directory, or start with a new --checkpoint-dir"
    )


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
