"""TensorFlow's C++ logs: quiet by default in every command, back with ``--log-level DEBUG`` or
``TF_CPP_MIN_LOG_LEVEL``.

``TF_CPP_MIN_LOG_LEVEL`` (0 info, 1 warnings, 2 errors, 3 fatal only) is TensorFlow's own switch, but
the lines its shared libraries write while they load, before ``absl::InitializeLog()`` runs (oneDNN,
CUDA driver probing, CPU features), ignore it; so does the ``cuInit`` error of a CUDA build on a machine
without a GPU. They would land between our structured log lines in every command that loads
TensorFlow, and in every worker.

So the first ``import tensorflow`` of a process (by us, by Keras, by anything) runs with file
descriptor 2 redirected to a temporary file, and TensorFlow's devices are listed inside it (which is
when CUDA is probed). Then stderr is restored and what was captured is written back, less the
TensorFlow lines below the level: exactly what ``TF_CPP_MIN_LOG_LEVEL`` would have hidden if it
worked for them. Anything else written meanwhile (a Python log line, a crash report) is replayed in
order; nothing is filtered after the import, where the variable itself is honoured.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import pathlib
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping, MutableMapping
from types import ModuleType
from typing import IO

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = 2  # errors and fatal only: what every command and worker shows unless asked for more
VERBOSE_LEVEL = 0

# "I0000 00:00:1796358038.592135   20717 port.cc:153] ..." (absl/glog: severity, date, time, thread, file).
_NATIVE_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
_ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CONTINUATION = b"To enable the following instructions:"  # cpu_feature_guard's second line (severity I)
_NO_GPU_ERROR = b"failed call to cuInit"


def configure(environ: MutableMapping[str, str], *, verbose: bool) -> int:
    """Sets ``TF_CPP_MIN_LOG_LEVEL`` where the user did not (children inherit it) and returns the level.

    ``verbose`` (``--log-level DEBUG``) shows everything; otherwise errors only.
    """
    if LEVEL_VARIABLE not in environ:
        environ[LEVEL_VARIABLE] = str(VERBOSE_LEVEL if verbose else QUIET_LEVEL)
    return level(environ)


def level(environ: Mapping[str, str]) -> int:
    """The minimum severity shown, from ``TF_CPP_MIN_LOG_LEVEL`` (TensorFlow's default, 0, if unset or odd)."""
    try:
        return min(3, max(0, int(environ.get(LEVEL_VARIABLE, "0"))))
    except ValueError:
        return 0


def is_hidden(line: bytes, min_level: int, *, has_gpu: bool) -> bool:
    """Whether ``line`` is a TensorFlow start-up line that ``min_level`` hides."""
    if min_level < 1:
        return False
    if line.startswith((_ABSL_PREAMBLE, _CONTINUATION)):
        return True
    match = _NATIVE_LINE.match(line)
    if match is None:
        return False
    if _NO_GPU_ERROR in line and not has_gpu:
        return True  # a CUDA build on a machine without an NVIDIA device: not an error here
    return _SEVERITY[match.group(1)] < min_level


def has_nvidia_device() -> bool:
    return any(pathlib.Path("/dev").glob("nvidia[0-9]*"))


@contextlib.contextmanager
def filtered_stderr(min_level: int) -> Iterator[None]:
    """File descriptor 2 captured for the block, then replayed without the hidden start-up lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            _replay(captured, min_level)


def _replay(captured: IO[bytes], min_level: int) -> None:
    captured.seek(0)
    has_gpu = has_nvidia_device()
    kept = b"".join(line for line in captured if not is_hidden(line, min_level, has_gpu=has_gpu))
    if kept:
        os.write(2, kept)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, with a loader that imports it inside :func:`filtered_stderr`."""

    def __init__(self, min_level: int) -> None:
        self.min_level = min_level

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders do the finding, and later imports are plain
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self.min_level)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, min_level: int) -> None:
        self.loader, self.min_level = loader, min_level

    def __getattr__(self, name: str):
        return getattr(self.loader, name)  # resources, code, source: the real loader's

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__.loader = module.__loader__ = self.loader  # afterwards, nothing of this shows
        with filtered_stderr(self.min_level):
            self.loader.exec_module(module)
            module.config.list_physical_devices()  # CUDA probing happens here; devices are only listed


def quiet_tensorflow(min_level: int) -> None:
    """Hides TensorFlow's start-up lines below ``min_level`` when (if ever) it is imported."""
    if min_level < 1 or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder(min_level))
