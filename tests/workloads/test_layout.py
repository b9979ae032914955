"""The rooms of ``workloads/`` and who may import whom (README, "Layout").

A room is a folder of the package (``core``, ``data``, ``training``, ``workflow``, ``serving``,
``serving/dev``, ``streaming``, ``commands``) or a top-level module (``models``, ``cli``). Each room
imports only the rooms beneath it, so the foundation never learns about the workflow and the serving
contract never about its development server.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "workloads"
ML_FRAMEWORKS = ("tensorflow", "torch", "keras")

# Room -> the rooms it may import (besides itself).
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "models": {"core"},
    "data": {"core"},
    "training": {"core", "data", "models"},
    "serving": {"core"},
    "serving.dev": {"core", "serving"},
    "streaming": {"core", "data", "serving"},
    "workflow": {"core", "data", "models", "training", "serving", "serving.dev"},
    "commands": {"core", "data", "models", "training", "serving", "serving.dev", "streaming", "workflow"},
    "cli": {"core"},
    "__main__": {"cli"},
    "__init__": set(),
}


def room_of(module: str) -> str | None:
    """``workloads.serving.dev.server`` -> ``serving.dev``; None outside the package or for the package itself."""
    parts = module.split(".")
    if parts[0] != "workloads" or len(parts) == 1:
        return None
    if parts[1:3] == ["serving", "dev"]:
        return "serving.dev"
    return parts[1]


def modules() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (inside functions too), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from workloads import models` names a module; `from workloads.x import Name` names x.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def module_name(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_room_imports_only_the_rooms_beneath_it(path):
    room = room_of(module_name(path)) or "__init__"
    allowed = MAY_IMPORT[room] | {room}
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name} (room {target!r})"
        for line, name in imported_modules(path)
        if (target := room_of(name)) is not None
        and target not in allowed
        and not (room == "core" and name == "workloads.__file__")
    ]
    assert not wrong, f"room {room!r} may import {sorted(allowed)} only:\n" + "\n".join(wrong)


def test_every_room_is_known():
    rooms = {room_of(module_name(p)) or "__init__" for p in modules()}
    assert rooms <= set(MAY_IMPORT), f"rooms without a rule here: {sorted(rooms - set(MAY_IMPORT))}"


def test_the_foundation_imports_no_ml_framework():
    core = [p for p in modules() if room_of(module_name(p)) == "core"]
    wrong = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in core
        for line, name in imported_modules(p)
        if name.split(".")[0] in ML_FRAMEWORKS
    ]
    assert not wrong, "workloads.core must stay free of ML frameworks:\n" + "\n".join(wrong)


def test_commands_are_one_module_each_named_after_the_command():
    from workloads import cli

    expected = {name.replace("-", "_") for name in cli.COMMANDS}
    present = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__"}
    assert present == expected, "every workloads/commands/<name>.py is a command, and every command has one"
    elsewhere = sorted(str(p.relative_to(ROOT)) for p in modules() if p.stem.endswith("_command"))
    assert not elsewhere, f"commands live in workloads/commands/ only: {elsewhere}"
