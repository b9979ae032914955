"""TensorFlow's runtime for the TensorFlow trainers: importing it with the thread settings, and
translating the errors of a lost peer into the training exit codes (docs/interfaces.md)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from workloads.core.errors import PeerLostError


def import_tensorflow(threads: int) -> Any:
    """TensorFlow, quiet on stderr, limited to ``threads`` intra- and inter-op threads (0: its default)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


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
