"""PyTorch's distributed runtime for the DDP trainer: device, backend, precision and the process group.

- **Device and backend**: a visible CUDA device means NCCL on ``cuda:LOCAL_RANK``; otherwise gloo on
  the CPU. Nothing to configure, nothing silently different: the choice is logged.
- **Precision**: ``--precision auto`` is bf16 autocast on GPUs that support it (no loss scaling
  needed), fp16 autocast with a ``GradScaler`` on older GPUs, and fp32 on the CPU, where autocast buys
  nothing on most processors. ``bf16``/``fp16`` force autocast anywhere (fp16 brings its scaler).
- **Joining**: rank 0 hosts the rendezvous store (or torchrun's agent does), every rank connects
  within ``--startup-timeout``, and before any collective the ranks compare their ``WORLD_SIZE`` and
  training settings through the store: rank 0 judges and publishes a verdict, so a mismatch ends
  every rank at once with one clear line instead of a collective that never completes. The process
  group's own timeout (``--collective-timeout``) bounds every collective afterwards.

Failures are translated into the training exit codes (docs/interfaces.md): a peer that never came,
went away or stopped answering is :class:`PeerLostError` (138, retryable); ranks that disagree about
the job are :class:`ClusterConfigError` (1, permanent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from workloads.core import children, logs
from workloads.core.errors import ClusterConfigError, PeerLostError
from workloads.training import cluster

log = logging.getLogger(__name__)
PrecisionName = Literal["fp32", "bf16", "fp16"]
JOIN_PREFIX = "mlstack/join"
# How gloo and NCCL report a peer that died or stopped answering (plain RuntimeErrors in gloo's case).
_PEER_FAILURE = re.compile(r"gloo/|Connection closed by peer|Connection reset by peer|NCCL|timed out", re.I)


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where this rank computes and how it talks to the others."""

    device: Any  # torch.device
    backend: Literal["nccl", "gloo"]

    def describe(self) -> str:
        return f"{self.backend} on {self.device}"


def place(local_rank: int) -> Placement:
    """``cuda:LOCAL_RANK`` with NCCL when a GPU is visible, else the CPU with gloo."""
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ClusterConfigError(
                f"LOCAL_RANK is {local_rank} but only {count} GPU(s) are visible: start at most {count} "
                "workers per node (torchrun --nproc-per-node), or make more GPUs visible"
            )
        torch.cuda.set_device(local_rank)
        return Placement(torch.device("cuda", local_rank), "nccl")
    return Placement(torch.device("cpu"), "gloo")


@dataclasses.dataclass(frozen=True)
class Precision:
    name: PrecisionName
    loss_scaling: bool  # fp16 needs a GradScaler; bf16 has fp32's range and does not

    @property
    def autocast_dtype(self) -> Any:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)


def choose_precision(requested: str, device_type: str, bf16_supported: bool) -> Precision:
    """``--precision`` resolved for a device (pure, so every branch is testable without a GPU)."""
    if requested == "auto":
        if device_type != "cuda":
            return Precision("fp32", loss_scaling=False)
        requested = "bf16" if bf16_supported else "fp16"
    if requested not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {requested!r}")
    return Precision(requested, loss_scaling=requested == "fp16")


def precision_for(requested: str, placement: Placement) -> Precision:
    import torch

    cuda = placement.device.type == "cuda"
    return choose_precision(
        requested, placement.device.type, cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    )


@contextlib.contextmanager
def autocast(precision: Precision, placement: Placement) -> Iterator[None]:
    """Mixed-precision forward pass when ``precision`` asks for it; plain fp32 otherwise."""
    import torch

    dtype = precision.autocast_dtype
    if dtype is None:
        yield
        return
    with torch.autocast(placement.device.type, dtype=dtype):
        yield


def follow_agent() -> None:
    """A worker started by a torchrun agent dies with it (Linux), as it would with its pod.

    torchrun starts each worker in a session of its own, so whatever kills an agent (a lost node, a
    launcher stopping it) leaves the worker running: an unsupervised rank that keeps the others
    waiting on it and the agent's exit barrier waiting for a node that is gone. The kernel's
    parent-death signal ends the worker as soon as its agent is gone.
    """
    if sys.platform != "linux" or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    if not children.die_with_parent(os.getppid()):  # exits at once if the agent is already gone
        log.warning("could not tie this worker to its agent (prctl refused)")


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective or store failure caused by another rank (retryable)."""
    import torch.distributed as dist

    if isinstance(error, dist.DistError):
        return True
    return isinstance(error, RuntimeError) and bool(_PEER_FAILURE.search(str(error)))


def peer_lost(error: BaseException, doing: str) -> PeerLostError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return PeerLostError(f"lost contact with a peer worker while {doing} ({first_line})")


def join(
    info: cluster.ClusterInfo,
    backend: str,
    *,
    startup_timeout: float,
    collective_timeout: float,
    settings: Mapping[str, Any],
) -> None:
    """Joins the default process group after every rank agreed on the job (see module docstring)."""
    import torch.distributed as dist

    began = time.monotonic()
    _warn_about_a_shared_store()
    store = _rendezvous(info, startup_timeout)
    _agree(store, info, settings, startup_timeout)
    dist.init_process_group(
        backend,
        store=store,
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=collective_timeout),
    )
    log.info(
        "joined the process group: rank %d of %d in %.1f s",
        info.rank,
        info.world_size,
        time.monotonic() - began,
        extra=logs.fields(backend=backend, master=f"{info.master_addr}:{info.master_port}"),
    )


def _warn_about_a_shared_store() -> None:
    """torchrun shares one store across restarts unless told not to; after a restart that can fail."""
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    if shared and os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") != "0":
        log.warning(
            "torchrun keeps one store for every restart of this job (TORCHELASTIC_USE_AGENT_STORE=True): "
            "after a restart gloo can read a dead peer's address from the previous round and fail to "
            "connect. Start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment "
            "(`train --local-workers` does)"
        )


def leave() -> None:
    """Destroys the process group (if any) so the process exits without waiting on dead peers."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _rendezvous(info: cluster.ClusterInfo, timeout: float) -> Any:
    import torch.distributed as dist

    where = f"{info.master_addr}:{info.master_port} (MASTER_ADDR:MASTER_PORT)"
    try:
        store, _, _ = next(
            dist.rendezvous(
                "env://",
                rank=info.rank,
                world_size=info.world_size,
                timeout=datetime.timedelta(seconds=timeout),
            )
        )
    except dist.DistStoreError as error:
        joined = re.search(r"(\d+)/(\d+) clients joined", str(error))
        count = f"only {joined.group(1)} of them" if joined else "not all of them"
        raise PeerLostError(
            f"WORLD_SIZE is {info.world_size} but {count} reached the rendezvous at {where} within "
            f"--startup-timeout {timeout:g} s: start every rank, or correct WORLD_SIZE"
        ) from None
    except (dist.DistNetworkError, ValueError) as error:
        raise PeerLostError(
            f"cannot reach the rendezvous of rank 0 at {where} within --startup-timeout {timeout:g} s "
            f"({str(error).strip().splitlines()[0]}): check that rank 0 is running and the address is right"
        ) from None
    return store


def _agree(store: Any, info: cluster.ClusterInfo, settings: Mapping[str, Any], timeout: float) -> None:
    """Every rank posts its view of the job; rank 0 compares them and posts the verdict."""
    import torch.distributed as dist

    prefix = JOIN_PREFIX
    wait = datetime.timedelta(seconds=timeout)
    view = {"world_size": info.world_size, "settings": dict(settings)}
    store.set(f"{prefix}/rank-{info.rank}", json.dumps(view, sort_keys=True))
    verdict_key = f"{prefix}/verdict"
    if info.rank == 0:
        keys = [f"{prefix}/rank-{r}" for r in range(1, info.world_size)]
        try:
            store.wait(keys, wait)
        except dist.DistError:
            missing = [r for r, key in enumerate(keys, 1) if not store.check([key])]
            raise PeerLostError(
                f"rank(s) {missing} of WORLD_SIZE={info.world_size} did not join within --startup-timeout "
                f"{timeout:g} s: start every rank, or correct WORLD_SIZE"
            ) from None
        problems = [
            problem
            for rank, key in enumerate(keys, 1)
            for problem in _disagreements(rank, json.loads(store.get(key)), view)
        ]
        store.set(verdict_key, "; ".join(problems) or "ok")
        if problems:
            raise ClusterConfigError("the workers disagree about the job: " + "; ".join(problems))
        return
    try:
        store.wait([verdict_key], wait)
    except dist.DistError:
        raise PeerLostError(
            f"rank 0 did not confirm the job within --startup-timeout {timeout:g} s: a rank is missing, "
            "or the ranks disagree about WORLD_SIZE (see rank 0's log)"
        ) from None
    verdict = store.get(verdict_key).decode()
    if verdict != "ok":
        raise ClusterConfigError(f"the workers disagree about the job (rank 0's verdict): {verdict}")


def _disagreements(rank: int, theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    problems = []
    if theirs["world_size"] != ours["world_size"]:
        problems.append(f"rank {rank} has WORLD_SIZE={theirs['world_size']}, rank 0 has {ours['world_size']}")
    for name, value in ours["settings"].items():
        other = theirs["settings"].get(name)
        if other != value:
            flag = "--" + name.replace("_", "-")
            problems.append(f"rank {rank} runs with {flag} {other!r}, rank 0 with {value!r}")
    return problems
