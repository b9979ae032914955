"""TensorFlow's C++ start-up lines: hidden by default in every command, back on request (issue 21, item 10)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.workloads.support import ROOT, run_workloads, subprocess_env
from workloads.core import native_logs

ONEDNN = b"I0000 00:00:1796358038.592135   20717 port.cc:153] oneDNN custom operations are on."
CUINIT = (
    b"E0000 00:00:1796358043.626504   20717 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)"
)
OTHER_ERROR = b"E0000 00:00:1796358043.626504   20717 session.cc:12] something that matters"
PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


@pytest.mark.parametrize(
    ("line", "level", "has_gpu", "hidden"),
    [
        (ONEDNN, 2, False, True),
        (ONEDNN, 0, False, False),
        (PREAMBLE, 2, False, True),
        (PREAMBLE, 0, False, False),
        (CUINIT, 2, False, True),
        (CUINIT, 2, True, False),  # on a GPU machine a failed cuInit is a real error
        (OTHER_ERROR, 2, False, False),
        (OTHER_ERROR, 3, False, True),
        (b'{"level": "info", "msg": "I0000 is not a native line here"}', 3, False, False),
        (b"Traceback (most recent call last):", 3, False, False),
    ],
)
def test_only_native_lines_below_the_level_are_hidden(line, level, has_gpu, hidden):
    assert native_logs.is_hidden(line, level, has_gpu=has_gpu) is hidden


@pytest.mark.parametrize(
    ("environ", "verbose", "expected"),
    [
        ({}, False, 2),
        ({}, True, 0),
        ({"TF_CPP_MIN_LOG_LEVEL": "1"}, False, 1),
        ({"TF_CPP_MIN_LOG_LEVEL": "x"}, False, 0),
    ],
)
def test_the_users_level_wins_and_children_inherit_the_choice(environ, verbose, expected):
    assert native_logs.configure(environ, verbose=verbose) == expected
    assert "TF_CPP_MIN_LOG_LEVEL" in environ


IMPORT_TENSORFLOW = """
import os, sys
from workloads.core import native_logs
native_logs.quiet_tensorflow(native_logs.configure(os.environ, verbose=False))
print("python line before", file=sys.stderr, flush=True)
import keras  # loads TensorFlow, as the trainers and export do
import tensorflow as tf
assert tf.__spec__.loader.__class__.__name__ != "_QuietLoader"
print(tf.constant(1) + 1)
"""


def _import_tensorflow(**env: str) -> subprocess.CompletedProcess:
    environ = subprocess_env(**env)
    environ.pop("TF_CPP_MIN_LOG_LEVEL")
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", IMPORT_TENSORFLOW], cwd=ROOT, env=environ, capture_output=True, timeout=300
    )


def _native_lines(stderr: bytes) -> list[bytes]:
    return [line for line in stderr.splitlines() if native_logs.is_hidden(line, 3, has_gpu=True)]


@pytest.mark.slow
def test_tensorflow_loads_quietly_unless_asked_and_other_output_is_kept():
    quiet = _import_tensorflow()
    assert quiet.returncode == 0, quiet.stderr.decode()
    assert quiet.stderr.decode().splitlines() == ["python line before"]
    verbose = _import_tensorflow(TF_CPP_MIN_LOG_LEVEL="0")
    assert verbose.returncode == 0, verbose.stderr.decode()
    assert _native_lines(verbose.stderr), "TensorFlow wrote no start-up lines: nothing was tested"


@pytest.mark.slow
def test_a_training_command_writes_only_structured_lines(tmp_path, small_dataset):
    environ = subprocess_env()
    environ.pop("TF_CPP_MIN_LOG_LEVEL")
    result = run_workloads(
        "train", "--data", str(small_dataset), "--output", str(tmp_path / "model"), "--epochs", "1",
        "--batch-size", "256", "--metrics-port", "0", "--log-format", "json",
        env=environ, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for line in result.stderr.splitlines():
        json.loads(line)  # every line is one of ours: no TensorFlow start-up noise between them
