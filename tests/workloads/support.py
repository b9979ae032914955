"""Helpers for the workloads tests that start real processes."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child Pythons: this checkout first on the path, quiet TensorFlow, no GPU probing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSTACK_") and k != "TF_CONFIG"}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_workloads(*args: str, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    """``python -m workloads ARGS`` in a child process, output captured as text."""
    env = popen.pop("env", None) or subprocess_env()
    return subprocess.run(
        [sys.executable, "-m", "workloads", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def json_lines(text: str) -> list[dict]:
    """The JSON log records in a worker's output (other lines, e.g. TensorFlow's own, are skipped)."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def attempts(log_file: pathlib.Path) -> list[list[dict]]:
    """A launcher worker log split by attempt, as JSON records."""
    chunks = log_file.read_text().split("=== attempt ")[1:]
    return [json_lines(chunk.split("\n", 1)[1] if "\n" in chunk else "") for chunk in chunks]


def write_idx(directory: pathlib.Path) -> pathlib.Path:
    """Small synthetic IDX files in Fashion-MNIST's layout (300 train, 100 test records, gzipped)."""
    from workloads.data import datasets, idx, synthetic

    for split, count in (("train", 300), ("test", 100)):
        images, labels = synthetic.generate(count, seed=1, split=split)
        image_name, label_name = datasets.IDX_FILES[split]
        idx.write_idx(directory / (image_name + ".gz"), images, compress=True)
        idx.write_idx(directory / (label_name + ".gz"), labels, compress=True)
    return directory


def records(url) -> list[tuple[bytes, int]]:
    """The records of a shard directory, as (pixels, label), sorted: order aside."""
    from workloads.data.shards import ShardSet

    images, labels = ShardSet.open(str(url)).read_all()
    return sorted(zip((image.tobytes() for image in images), labels.tolist(), strict=True))
