"""dashboards/ holds content (boards, rules) and its generation only: it imports nothing from ``workloads``
or ``tests``, so the generator and the checks on its output run without either. What runs the
workloads under a real Prometheus is the test rig, in tests/dashboards/rig/.

Two views of one rule: the source (every import statement, at any depth) and a fresh interpreter
(importing every module and generating every file loads no such module).
"""

import ast
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "dashboards"
FORBIDDEN = ("workloads", "tests")
DYNAMIC_IMPORTS = ("import_module", "__import__")
# Run in a fresh interpreter: imports each module of argv[1:] in turn, then runs `python -m dashboards`
# (with --root argv[0]), and prints which workloads or tests modules each step loaded.
PROBE = textwrap.dedent("""
    import contextlib, importlib, io, json, sys

    def loaded():
        return {name for name in sys.modules if name.split(".")[0] in FORBIDDEN}

    FORBIDDEN = ("workloads", "tests")
    pulled = {}
    for module in sys.argv[2:]:
        before = loaded()
        importlib.import_module(module)
        pulled[f"import {module}"] = sorted(loaded() - before)
    before = loaded()
    with contextlib.redirect_stdout(io.StringIO()):
        importlib.import_module("dashboards.__main__").main(["--root", sys.argv[1]])
    pulled["python -m dashboards"] = sorted(loaded() - before)
    print(json.dumps({step: names for step, names in pulled.items() if names}))
""")


def modules() -> list[pathlib.Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _literal_import(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("x")`` or ``__import__("x")``, if a literal."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called in DYNAMIC_IMPORTS and node.args and isinstance(node.args[0], ast.Constant):
        return node.args[0].value if isinstance(node.args[0].value, str) else None
    return None


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (inside functions too), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from workloads import x` may name a module x; report it as workloads.x.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and (name := _literal_import(node)):
            found.append((node.lineno, name))
    return sorted(found)


def forbidden_imports(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    return [
        f"{path.relative_to(root)}:{line} imports {name}"
        for line, name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    ]


def modules_loaded_by(module_names: list[str], workdir: pathlib.Path) -> dict[str, list[str]]:
    """``{step: [workloads or tests modules it loaded]}`` for each import of ``module_names`` and for
    ``python -m dashboards`` (writing under ``workdir``), in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(workdir), *module_names],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_dashboards_module_imports_workloads_or_tests(path):
    wrong = forbidden_imports(path)
    assert not wrong, "dashboards/ may not import workloads or tests:\n" + "\n".join(wrong)


def test_importing_dashboards_and_generating_loads_no_workloads_or_tests_module(tmp_path):
    pulled = modules_loaded_by([module_name(path) for path in modules()], tmp_path)
    assert not pulled, (
        "dashboards/ may not load workloads or tests (the first step that loads one):\n"
        + "\n".join(f"{step} loaded {', '.join(names)}" for step, names in pulled.items())
    )
    assert list((tmp_path / "dashboards" / "generated" / "grafana").glob("*.json")), "it generated nothing"


def test_an_import_of_workloads_anywhere_in_a_module_is_named_with_its_file_and_line(tmp_path):
    module = tmp_path / "dashboards" / "board.py"
    module.parent.mkdir()
    module.write_text(
        "import json\n"
        "from workloads.serving import tfs_config\n"
        "def board():\n"
        "    import tests.dashboards.rig.scenario\n"
        "    return importlib.import_module('workloads.streaming.kafka')\n"
    )
    assert forbidden_imports(module, tmp_path) == [
        "dashboards/board.py:2 imports workloads.serving.tfs_config",
        "dashboards/board.py:4 imports tests.dashboards.rig.scenario",
        "dashboards/board.py:5 imports workloads.streaming.kafka",
    ]


def test_the_probe_names_the_module_that_loads_workloads(tmp_path):
    pulled = modules_loaded_by(["dashboards.params", "tests.dashboards.rig.local_workloads"], tmp_path)
    assert list(pulled) == ["import tests.dashboards.rig.local_workloads"]
    assert "workloads.serving.tfs_config" in pulled["import tests.dashboards.rig.local_workloads"]
