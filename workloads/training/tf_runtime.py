"""TensorFlow's runtime for the TensorFlow trainers: importing it with the thread settings, reading and
writing a ``tf.train.Checkpoint`` inside a checkpoint directory, translating the errors of a lost peer
into the training exit codes (docs/interfaces.md), and bounding the start-up waits TensorFlow cannot
be interrupted in (:mod:`workloads.training.watchdog`)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from workloads.core.errors import CheckpointError, PeerLostError
from workloads.training import cluster, watchdog

# The coordination service's registration barrier timing out: its id, and each task missing (a line).
_BARRIER = "Wait_for_all_tasks_to_register"
_UNREGISTERED = re.compile(r"^/job:(\w+)/replica:\d+/task:(\d+)$", re.MULTILINE)


def import_tensorflow(threads: int) -> Any:
    """TensorFlow, quiet on stderr, limited to ``threads`` intra- and inter-op threads (0: its default)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


@contextlib.contextmanager
def joining(tf: Any, info: cluster.ClusterInfo, seconds: float) -> Iterator[None]:
    """The strategy joining the other tasks of TF_CONFIG within ``seconds`` (``--startup-timeout``),
    else :class:`PeerLostError` (exit 138) naming the tasks missing: those TensorFlow says never
    registered, or those that do not answer. Where TensorFlow has no deadline, or waits past its own,
    :func:`watchdog.startup_deadline` ends the process."""
    peers = {
        f"{job} {index}": address
        for job, addresses in info.cluster.items()
        for index, address in enumerate(addresses)
        if (job, index) != (info.task_type, info.task_index)
    }
    with watchdog.startup_deadline(seconds, peers):
        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
            text = str(error)
            missing = (
                [f"{job} {task}" for job, task in _UNREGISTERED.findall(text)] if _BARRIER in text else []
            )
            raise PeerLostError(watchdog.not_joined(seconds, peers, missing)) from None


def read_checkpoint(tf: Any, checkpoint: Any, directory: pathlib.Path, payload: str, where: str) -> None:
    """Restores ``checkpoint`` from ``directory/payload``; anything unreadable or mismatched is a
    :class:`CheckpointError` naming ``where``."""
    try:
        checkpoint.read(str(directory / payload)).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise CheckpointError(f"cannot restore {where}: {error}") from None


def checkpoint_writer(checkpoint: Any, payload: str) -> Callable[[pathlib.Path], None]:
    """What a checkpoint store calls to write ``checkpoint`` at ``payload`` inside a checkpoint directory."""

    def write(directory: pathlib.Path) -> None:
        (directory / payload).parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write(str(directory / payload))

    return write


@contextlib.contextmanager
def peer_loss_is_retryable(tf: Any, peers: str) -> Iterator[None]:
    """Raise :class:`PeerLostError` (retryable) for the errors TensorFlow gives when ``peers`` went away."""
    try:
        yield
    except (
        tf.errors.UnavailableError,
        tf.errors.DeadlineExceededError,
        tf.errors.CancelledError,
        tf.errors.AbortedError,
    ) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PeerLostError(f"lost contact with {peers} ({type(error).__name__}: {first_line})") from None
