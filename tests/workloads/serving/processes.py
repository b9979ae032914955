"""Real processes for the serving tests (the same launcher the demo uses), and waiting on things."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from workloads.serving.dev.process import ChildCommand, LocalDevServer, start_dev_server

T = TypeVar("T")
ServiceProcess = ChildCommand
DevServer = LocalDevServer
start_service = ChildCommand.start
__all__ = ["DevServer", "ServiceProcess", "start_dev_server", "start_service", "wait_until"]


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Polls ``check`` until it returns something truthy; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
