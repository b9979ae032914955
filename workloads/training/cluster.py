"""Who am I in the job? The one place that reads the cluster environment.

Three sources, checked in this order:

- ``TF_CONFIG`` as the Kubeflow TFJob operator injects it:
  ``{"cluster": {"chief": [...], "worker": [...], "ps": [...]}, "task": {"type": "worker", "index": 1}}``.
  Training replicas are the chief (if any) and the workers; the chief is rank 0 and worker ``i`` is
  rank ``i + 1``; with no chief, worker 0 is rank 0 and the chief. ``ps`` and ``evaluator`` tasks are
  not training replicas (rank ``None``); an evaluator need not be listed in ``cluster``.
- torchrun / PyTorchJob variables: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``. Rank 0 is the chief.
- Neither: a single process, rank 0 of 1, said so explicitly in the log.

Anything inconsistent raises :class:`ClusterConfigError` saying what is wrong and where.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Literal

from workloads.core.errors import ClusterConfigError

TASK_TYPES = ("chief", "worker", "ps", "evaluator")
_ADDRESS = re.compile(r"^[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """This process's place in the job."""

    source: Literal["tf_config", "torchrun", "single"]
    task_type: str
    task_index: int
    rank: int | None  # index among the training replicas; None for ps / evaluator
    world_size: int  # number of training replicas
    cluster: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    local_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def is_chief(self) -> bool:
        """The replica that writes final artifacts (models, summaries): rank 0."""
        return self.rank == 0

    @property
    def is_training_replica(self) -> bool:
        return self.rank is not None

    @property
    def has_parameter_servers(self) -> bool:
        return bool(self.cluster.get("ps"))

    def describe(self) -> str:
        if self.source == "single":
            return "single process (no TF_CONFIG and no RANK/WORLD_SIZE in the environment)"
        return (
            f"{self.task_type} {self.task_index} (rank {self.rank} of {self.world_size}, from {self.source})"
        )


def detect(environ: Mapping[str, str]) -> ClusterInfo:
    """Reads ``TF_CONFIG``, else torchrun's variables, else falls back to a single process."""
    if environ.get("TF_CONFIG", "").strip():
        return from_tf_config(environ["TF_CONFIG"])
    if any(name in environ for name in ("RANK", "WORLD_SIZE")):
        return from_torchrun(environ)
    return ClusterInfo(source="single", task_type="worker", task_index=0, rank=0, world_size=1)


def from_tf_config(text: str) -> ClusterInfo:
    """This task's place in the job from ``TF_CONFIG``, every part checked (see the module docstring)."""
    cluster_json, task_json = _load_tf_config(text)
    cluster = _cluster_spec(cluster_json)
    task_type, task_index = _task(task_json, cluster)
    chiefs, workers = len(cluster.get("chief", ())), len(cluster.get("worker", ()))
    if chiefs + workers == 0:
        raise ClusterConfigError("TF_CONFIG.cluster has no chief and no worker: nothing would train")
    return ClusterInfo(
        source="tf_config",
        task_type=task_type,
        task_index=task_index,
        rank=_rank(task_type, task_index, chiefs),
        world_size=chiefs + workers,
        cluster=cluster,
    )


def _load_tf_config(text: str) -> tuple[dict, dict]:
    """``TF_CONFIG``'s ``cluster`` and ``task`` objects, present and of the right kind."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ClusterConfigError(f"TF_CONFIG is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ClusterConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    cluster = config.get("cluster")
    task = config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterConfigError(
            "TF_CONFIG.cluster is missing or empty: it maps task types to 'host:port' lists"
        )
    if not isinstance(task, dict):
        raise ClusterConfigError("TF_CONFIG.task is missing: expected {'type': 'worker', 'index': 0}")
    return cluster, task


def _cluster_spec(cluster: dict) -> dict[str, tuple[str, ...]]:
    """``TF_CONFIG.cluster`` as task type -> addresses: known types, 'host:port' addresses, each once."""
    tasks: dict[str, tuple[str, ...]] = {}
    for task_type, addresses in cluster.items():
        if task_type not in TASK_TYPES:
            raise ClusterConfigError(
                f"TF_CONFIG.cluster has unknown task type {task_type!r}; valid: {list(TASK_TYPES)}"
            )
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ClusterConfigError(f"TF_CONFIG.cluster.{task_type} must be a list of 'host:port' strings")
        for address in addresses:
            if not _ADDRESS.match(address):
                raise ClusterConfigError(f"TF_CONFIG.cluster.{task_type}: {address!r} is not 'host:port'")
        tasks[task_type] = tuple(addresses)
    if len(tasks.get("chief", ())) > 1:
        raise ClusterConfigError(
            f"TF_CONFIG.cluster.chief lists {len(tasks['chief'])} tasks; there can be one"
        )
    all_addresses = [a for addresses in tasks.values() for a in addresses]
    duplicates = sorted({a for a in all_addresses if all_addresses.count(a) > 1})
    if duplicates:
        raise ClusterConfigError(f"TF_CONFIG.cluster lists {duplicates} more than once")
    return tasks


def _task(task: dict, cluster: Mapping[str, tuple[str, ...]]) -> tuple[str, int]:
    """``TF_CONFIG.task`` as (type, index), a task the cluster lists (an evaluator need not be listed)."""
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in TASK_TYPES:
        raise ClusterConfigError(f"TF_CONFIG.task.type is {task_type!r}; valid: {list(TASK_TYPES)}")
    if not isinstance(task_index, int) or isinstance(task_index, bool) or task_index < 0:
        raise ClusterConfigError(f"TF_CONFIG.task.index must be a non-negative integer, got {task_index!r}")
    if task_type != "evaluator":
        listed = cluster.get(task_type, ())
        if task_index >= len(listed):
            raise ClusterConfigError(
                f"TF_CONFIG.task is {task_type} {task_index}, but cluster.{task_type} lists {len(listed)} task(s)"
            )
    return task_type, task_index


def _rank(task_type: str, task_index: int, chiefs: int) -> int | None:
    """Rank among the training replicas: the chief 0, worker ``i`` after it; None for ps and evaluator."""
    if task_type == "chief":
        return 0
    if task_type == "worker":
        return chiefs + task_index
    return None


def from_torchrun(environ: Mapping[str, str]) -> ClusterInfo:
    missing = [name for name in ("RANK", "WORLD_SIZE") if name not in environ]
    if missing:
        raise ClusterConfigError(f"{' and '.join(missing)} unset while {_TORCHRUN_VARS} are partly set")
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        raw = environ.get(name)
        if raw is None:
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            raise ClusterConfigError(f"{name} must be an integer, got {raw!r}") from None
    rank, world = values["RANK"], values["WORLD_SIZE"]
    if world < 1:
        raise ClusterConfigError(f"WORLD_SIZE must be at least 1, got {world}")
    if not 0 <= rank < world:
        raise ClusterConfigError(f"RANK {rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    if world > 1 and not environ.get("MASTER_ADDR"):
        raise ClusterConfigError("MASTER_ADDR is unset: every rank needs the rendezvous address of rank 0")
    port = values.get("MASTER_PORT")
    if port is not None and not 0 < port < 65536:
        raise ClusterConfigError(f"MASTER_PORT must be 1..65535, got {port}")
    return ClusterInfo(
        source="torchrun",
        task_type="worker",
        task_index=rank,
        rank=rank,
        world_size=world,
        local_rank=values.get("LOCAL_RANK", 0),
        master_addr=environ.get("MASTER_ADDR"),
        master_port=port,
    )


def tf_config_for(workers: list[str], index: int, chief: str | None = None) -> str:
    """The ``TF_CONFIG`` a TFJob would give worker ``index`` of ``workers`` (local launches use it)."""
    cluster: dict[str, list[str]] = {"worker": list(workers)}
    if chief:
        cluster["chief"] = [chief]
    return tf_config(cluster, "worker", index)


def tf_config(cluster: Mapping[str, list[str]], task_type: str, index: int) -> str:
    """The ``TF_CONFIG`` a TFJob gives task ``index`` of ``task_type`` in ``cluster``."""
    return json.dumps(
        {
            "cluster": {k: list(v) for k, v in cluster.items()},
            "task": {"type": task_type, "index": index},
            "environment": "cloud",
        }
    )
