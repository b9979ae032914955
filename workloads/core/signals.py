"""Stopping a long-running service cleanly on SIGTERM (Kubernetes) or SIGINT (a terminal)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)


def stop_on_signals(finishing: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT; the service finishes ``finishing`` (logged), then stops."""
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        log.info("received %s; finishing %s", signal.Signals(signum).name, finishing)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    return stop
