"""What a child ``python -m workloads`` process is given: this ``workloads`` tree first on its import
path (so a checkout runs its own code, installed or not) and TensorFlow's C++ logs quiet by default."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

import workloads

PACKAGE_ROOT = pathlib.Path(workloads.__file__).resolve().parents[1]


def python_path(environ: Mapping[str, str] = os.environ) -> str:
    """``PYTHONPATH`` for a child: this tree, then whatever the parent had."""
    return os.pathsep.join(p for p in (str(PACKAGE_ROOT), environ.get("PYTHONPATH", "")) if p)


def child_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``environ`` for a child process, with :func:`python_path` and quiet TensorFlow logs."""
    return {
        **environ,
        "PYTHONPATH": python_path(environ),
        "TF_CPP_MIN_LOG_LEVEL": environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
