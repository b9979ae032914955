"""Paths of the repository the program runs from."""

from __future__ import annotations

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def project_path(value: str) -> pathlib.Path:
    """A path from stack config: absolute as given, relative to the repository root otherwise."""
    path = pathlib.Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path


def exporting_tensorflow() -> tuple[int, int]:
    """The TensorFlow (major, minor) the images export SavedModels with: the ``tf`` extra's pin in
    pyproject.toml, which the training image installs."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (pin,) = [r for r in extras["tf"] if re.match(r"^tensorflow==", r)]
    major, minor = pin.removeprefix("tensorflow==").split(".")[:2]
    return int(major), int(minor)
