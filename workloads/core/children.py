"""What a child ``python -m workloads`` process is given: this ``workloads`` tree first on its import
path (so a checkout runs its own code, installed or not) and TensorFlow's C++ logs quiet by default;
and how a child is tied to its parent so that it dies with it (Linux's parent-death signal)."""

from __future__ import annotations

import ctypes
import os
import pathlib
import signal
import sys
from collections.abc import Callable, Mapping

import workloads
from workloads.core import native_logs
from workloads.core.errors import PeerLostError

PACKAGE_ROOT = pathlib.Path(workloads.__file__).resolve().parents[1]
PR_SET_PDEATHSIG = 1  # linux/prctl.h


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


def tie_to_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that makes the child die with this process
    (:func:`die_with_parent`, armed between fork and exec, so no window is left); None off Linux.

    The function is resolved here, before the fork: the child only makes the system call.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    return lambda: _arm(prctl, parent)


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
