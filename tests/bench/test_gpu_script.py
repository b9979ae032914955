"""The prepared GPU run (tests/bench/gpu): rehearsed end to end on the CPU, and its refusals.

The run itself needs the H200 machine; here its ``--cpu-check`` goes through every step (the gpu-marked
tests, the shards, the reader limit and a training run of every model variant through the real
trainer) with tiny sizes, and the outputs are read back as the device session would read them.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib

import pytest

from tests.bench.gpu import gpu_tests, report, wheels
from tests.workloads.support import ROOT, subprocess_env
from workloads import models


def run_gpu_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.bench.gpu", *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_cpu_check_measures_every_model_variant_and_the_reader_limit_and_says_no_gpu_was_present(
    tmp_path,
):
    out = tmp_path / "out"
    result = run_gpu_script("--cpu-check", "--out", str(out), "--workdir", str(tmp_path / "work"))
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads((out / report.JSON_NAME).read_text())
    assert measured["mode"] == "cpu-check" and "No GPU was present" in measured["note"]
    assert measured["machine"]["gpu"] is None and measured["date"]
    training = {row["model"]: row for row in measured["training"]}
    assert sorted(training) == sorted(models.model_names())
    for row in training.values():
        assert row["samples_per_second"] > 0, row
        assert (row["device"], row["precision"]) == ("cpu", "bf16")
    (reader,) = measured["reader"]
    assert reader["samples_per_second"] > 0 and reader["batch_size"] == measured["sizes"]["batch_sizes"][0]
    assert measured["gpu_tests"]["returncode"] == 0 and "skipped" in measured["gpu_tests"]["summary"]
    table = (out / report.MARKDOWN_NAME).read_text()
    assert "No GPU was present" in table and "No GPU was present" in result.stdout
    assert all(f"| {name} |" in table for name in models.model_names())


def test_without_the_wheels_folder_the_gpu_run_refuses_in_one_line(tmp_path):
    missing = tmp_path / "gpu-wheels"
    result = run_gpu_script("--wheels", str(missing), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(missing) in line and "python -m tests.bench.gpu.wheels" in line
    assert not (tmp_path / "out").exists()


def test_a_wheels_folder_lacking_a_listed_wheel_is_refused_naming_it(tmp_path):
    (tmp_path / wheels.REQUIREMENTS).write_text("keras==3.15.1\nnamex==0.1.0\n")
    (tmp_path / "namex-0.1.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "keras-3.14.0-py3-none-any.whl").write_bytes(b"")
    assert "lacks the wheel(s) of keras==3.15.1:" in wheels.problem(tmp_path)
    (tmp_path / "keras-3.15.1-py3-none-any.whl").write_bytes(b"")
    assert wheels.problem(tmp_path) is None


def test_the_wheels_bring_keras_with_its_requirements_and_leave_torch_and_numpy_to_the_machine():
    pins = wheels.closure()
    assert {"keras", "namex", "optree", "h5py", "ml-dtypes", "rich", "fsspec"} <= set(pins)
    assert not {"torch", "numpy", "tensorflow"} & set(pins)
    assert all(importlib.metadata.version(name) == version for name, version in pins.items())


def test_the_wheels_carry_the_workloads_pinned_versions():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pinned = dict(line.split("==") for line in pyproject["project"]["dependencies"])
    pins = wheels.closure()
    carried = {name: pins[name] for name in wheels.ROOTS if name in pinned}
    assert carried and carried == {name: pinned[name] for name in carried}


def test_every_gpu_marked_test_file_is_run_on_the_machine_or_left_out_with_a_reason():
    marked = set(gpu_tests.marked_files())
    assert set(gpu_tests.RUN_THERE) | set(gpu_tests.LEFT_OUT) == marked
    assert not set(gpu_tests.RUN_THERE) & set(gpu_tests.LEFT_OUT)
