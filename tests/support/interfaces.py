"""Reads the tables of docs/interfaces.md, the contract between the layers, so every layer's tests compare
themselves with the contract itself."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]

DOC = ROOT / "docs" / "interfaces.md"


def table(heading: str) -> list[list[str]]:
    """Rows (cells as text) of the first table under the ``## heading``."""
    text = DOC.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def inventory_variables() -> set[str]:
    return {
        name for row in table("Inventory variables the Pulumi program sets") for name in code_spans(row[0])
    }


def names(what: str) -> list[str]:
    (row,) = [row for row in table("Names") if row[0] == what]
    return code_spans(row[1])


def ports() -> set[int]:
    numbers: set[int] = set()
    for row in table("Ports"):
        for low, high in re.findall(r"(\d+)(?:-(\d+))?", row[0]):
            numbers.update(range(int(low), int(high or low) + 1))
    return numbers
