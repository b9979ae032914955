"""The run's results as ``gpu-bench.json`` and a Markdown section for docs/benchmarks.md.

Both are rewritten after every measurement, so a run stopped early still leaves what it measured.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

JSON_NAME = "gpu-bench.json"
MARKDOWN_NAME = "gpu-bench.md"


def write(out: pathlib.Path, result: dict[str, Any]) -> None:
    (out / JSON_NAME).write_text(json.dumps(result, indent=2) + "\n")
    (out / MARKDOWN_NAME).write_text(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    machine, sizes = result["machine"], result["sizes"]
    lines = [
        f"## GPU ({machine['gpu'] or 'none: CPU check'}): PyTorch training against the input-bound limit",
        "",
        f"_Date: {result['date']}. Device: {machine['gpu'] or 'no GPU'}; {machine['host']}; PyTorch "
        f"{machine['torch']} (CUDA {machine['cuda']}), Keras {machine['keras']}._",
        "",
    ]
    if result.get("note"):
        lines += [f"**{result['note']}**", ""]
    tests = result.get("gpu_tests")
    if tests:
        lines += [f"`pytest -m gpu` ({', '.join(tests['files'])}): {tests['summary']}.", ""]
    lines += [
        f"{sizes['records']:,} synthetic Fashion-MNIST records; `{result['precision']}` autocast; world "
        f"size 1; {sizes['warmup_steps']} warm-up steps excluded, at least {sizes['timed_steps']} steps "
        "timed. The limit is the same batches onto the same device with no model.",
        "",
        "| model | global batch | training samples/s | input-bound limit samples/s | training / limit |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(_row(row, result["reader"]) for row in result["training"]),
    ]
    return "\n".join(lines) + "\n"


def _row(row: dict[str, Any], readers: list[dict[str, Any]]) -> str:
    reader = next((r for r in readers if r["batch_size"] == row["batch_size"]), {})
    train, limit = row.get("samples_per_second"), reader.get("samples_per_second")
    ratio = f"{train / limit:.2f}" if train and limit else ""
    return (
        f"| {row['model']} | {row['batch_size']} | {_rate(train, row.get('error'))} "
        f"| {_rate(limit, reader.get('error'))} | {ratio} |"
    )


def _rate(value: float | None, error: str | None) -> str:
    return f"{value:,.0f}" if value else f"failed: {error or 'not measured'}"
