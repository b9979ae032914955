"""The GPU run: ``python3 -m tests.bench.gpu --out DIR`` on the H200 machine (docs/benchmarks.md).

In order: install the carried wheels (``build/gpu-wheels``, made here by ``python -m
tests.bench.gpu.wheels``) with no index; record the device; run the ``gpu``-marked tests; write
synthetic Fashion-MNIST shards; then, for each global batch size, the input-bound limit and every
model variant's training samples/s with bf16 autocast. Results go to ``DIR/gpu-bench.json`` and
``DIR/gpu-bench.md`` (rewritten after each step), the logs beside them. Everything stays inside
``--budget`` seconds: what would not fit is recorded as not measured.

``--cpu-check`` rehearses the same steps on the CPU with tiny sizes and says so in every output; it
neither needs nor installs the wheels (this checkout's environment has the packages). Without it a
machine where PyTorch sees no GPU is refused, so a broken driver cannot pass off CPU numbers as GPU ones.
Exit codes: 0 all measured and the tests passed; 1 something failed (see the outputs); 2 refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from tests.bench.gpu import gpu_tests, machine, measure, report, wheels
from tests.bench.run import ROOT
from workloads import models

CPU_NOTE = "No GPU was present: a CPU check with tiny sizes, not a GPU measurement."
RESERVE = 15.0  # seconds kept back from the budget for writing the report
TESTS_BUDGET = 180.0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    began = time.monotonic()
    if args.cpu_check:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before PyTorch is imported, here and in the children
    elif refusal := _prepare_gpu_machine(args.wheels):
        print(f"tests.bench.gpu: {refusal}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    result = _run(args, deadline=began + args.budget)
    print(report.markdown(result), end="")
    failed = [row for row in result["training"] + result["reader"] if "error" in row]
    return 1 if failed or result["gpu_tests"]["returncode"] != 0 else 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default_out = os.environ.get("OUT") or str(ROOT / "build" / "gpu-bench" / "out")
    parser.add_argument("--out", type=pathlib.Path, default=default_out, help="results folder [$OUT]")
    parser.add_argument("--workdir", type=pathlib.Path, default=ROOT / "build" / "gpu-bench" / "work")
    parser.add_argument("--wheels", type=pathlib.Path, default=wheels.FOLDER, help="the carried wheels")
    parser.add_argument("--budget", type=float, default=360.0, help="seconds for the whole run")
    parser.add_argument("--cpu-check", action="store_true", help="rehearse on the CPU with tiny sizes")
    return parser.parse_args(argv)


def _prepare_gpu_machine(folder: pathlib.Path) -> str | None:
    """Installs the wheels and checks for a GPU; the reason to refuse, or None."""
    if problem := wheels.problem(folder):
        return problem
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != wheels.PYTHON:
        return (
            f"the wheels are for Python {wheels.PYTHON}, this is {here}: use --cpu-check off the GPU machine"
        )
    installed = subprocess.run(wheels.install_command(folder), capture_output=True, text=True, check=False)
    if installed.returncode != 0:
        lines = installed.stderr.strip().splitlines() or ["no output"]
        return f"installing the wheels from {folder} failed: {lines[-1]}"
    return machine.gpu_absent_reason()


def _run(args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    sizes = measure.CPU_SIZES if args.cpu_check else measure.GPU_SIZES
    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "cpu-check" if args.cpu_check else "gpu",
        "note": CPU_NOTE if args.cpu_check else None,
        "machine": machine.facts(),
        "sizes": dataclasses.asdict(sizes),
        "precision": measure.PRECISION,
        "world_size": 1,
        "gpu_tests": None,
        "training": [],
        "reader": [],
    }
    _save_nvidia_smi(args.out)
    env = _child_env()

    def remaining() -> float:
        return deadline - RESERVE - time.monotonic()

    result["gpu_tests"] = gpu_tests.run(env, args.out / "pytest-gpu.log", min(TESTS_BUDGET, remaining()))
    report.write(args.out, result)
    data = measure.make_data(args.workdir, sizes)
    device = "cpu" if args.cpu_check else "cuda:0"
    for batch_size in sizes.batch_sizes:
        configs = [
            measure.train_config(data, args.workdir, m, batch_size, sizes) for m in models.model_names()
        ]
        result["reader"].append({"batch_size": batch_size, **measure.reader_rate(configs[0], device, sizes)})
        for config in configs:
            row = {"model": config.model, "batch_size": batch_size}
            if remaining() <= 0:
                row["error"] = "not run: the time budget was spent"
            else:
                row |= measure.training_rate(config, env, args.out / "train.log", remaining())
            result["training"].append(row)
            report.write(args.out, result)
    return result


def _child_env() -> dict[str, str]:
    """The children's environment: this checkout importable; no MLSTACK_*, MLFLOW_* or TF_CONFIG leaking in
    (a tracked run would need MLflow, which the machine lacks)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLSTACK_", "MLFLOW_")) and k != "TF_CONFIG"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _save_nvidia_smi(out: pathlib.Path) -> None:
    text = machine.nvidia_smi()
    (out / "nvidia-smi.txt").write_text(text + "\n" if text else "nvidia-smi: not present or failed\n")


if __name__ == "__main__":
    sys.exit(main())
