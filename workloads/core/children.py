"""What a child ``python -m workloads`` process is given: this ``workloads`` tree first on its import
path (so a checkout runs its own code, installed or not) and TensorFlow's C++ logs quiet by default;
and how a child is tied to its parent so that it dies with it (Linux's parent-death signal)."""

from __future__ import annotations

import ctypes
import logging
import os
import pathlib
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

import workloads
from workloads.core import native_logs
from workloads.core.errors import PeerLostError

PACKAGE_ROOT = pathlib.Path(workloads.__file__).resolve().parents[1]
PR_SET_PDEATHSIG = 1  # linux/prctl.h
log = logging.getLogger(__name__)


def python_path(environ: Mapping[str, str] = os.environ) -> str:
    """``PYTHONPATH`` for a child: this tree, then whatever the parent had."""
    return os.pathsep.join(p for p in (str(PACKAGE_ROOT), environ.get("PYTHONPATH", "")) if p)


def child_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``environ`` for a child process, with :func:`python_path` and quiet TensorFlow logs."""
    return {
        **environ,
        "PYTHONPATH": python_path(environ),
        native_logs.LEVEL_VARIABLE: environ.get(native_logs.LEVEL_VARIABLE, str(native_logs.QUIET_LEVEL)),
    }


def die_with_parent(parent: int) -> bool:
    """This process gets SIGKILL when its parent ends (Linux); False where that cannot be arranged.

    ``parent`` is the pid the caller expects as its parent: when it is already gone (the parent died
    before the signal was armed), this process exits at once with the retryable code 138. The kernel
    sends the signal when the *thread* that started this process exits, so the parent must start its
    children from a thread that lives as long as they should.
    """
    prctl = _prctl()
    return prctl is not None and _arm(prctl, parent)


def tied_to_this_process(argv: Sequence[str]) -> list[str]:
    """``argv`` started so that it gets SIGKILL when this process ends (Linux): through util-linux's
    ``setpriv --pdeathsig``, which arms the parent-death signal and then execs ``argv``.

    Not with a ``preexec_fn``: Python code between fork and exec can deadlock when the forking process has
    threads (the launcher has its log pumps, fsspec its IO thread, hdfs-native its runtime); two launches
    in a threaded test process hung in fork until the 15-minute timeout (measured). The kernel sends the
    signal when the forking *thread* exits, so start children from a thread that lives as long as they.
    Off Linux, or without setpriv (a warning), ``argv`` unchanged.
    """
    if sys.platform != "linux":
        return list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("setpriv (util-linux) is not installed: children will not die with this process")
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def _prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


def _arm(prctl: Callable[..., int], parent: int) -> bool:
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os._exit(PeerLostError.exit_code)
    return True
