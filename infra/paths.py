"""Paths of the repository the program runs from."""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def project_path(value: str) -> pathlib.Path:
    """A path from stack config: absolute as given, relative to the repository root otherwise."""
    path = pathlib.Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path
