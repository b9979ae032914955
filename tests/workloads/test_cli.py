"""The command line: every registered command builds, documents its flags, and fails cleanly."""

import dataclasses
import pathlib
import subprocess
import sys

import pytest

from workloads import cli
from workloads.core import settings

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_building_the_parser_imports_no_ml_framework():
    code = (
        "import sys; from workloads import cli; cli.build_parser(); "
        "bad = [m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_documents_every_config_field(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(cli.load_command(command).Config):
        assert settings.flag_name(field.name) in text, f"{command} --help misses {field.name}"


def test_no_command_prints_usage_and_fails(capsys):
    assert cli.main([]) == 2
    assert "<command>" in capsys.readouterr().err


def test_a_config_error_exits_2_and_names_the_flag(capsys, tmp_path):
    assert (
        cli.main(["tfs-config", "--out-dir", str(tmp_path), "--model-base-path", "/m", "--cpu-cores", "-1"])
        == 2
    )
    assert "--cpu-cores" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_module_entry_point_runs(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workloads",
            "tfs-config",
            "--out-dir",
            str(tmp_path),
            "--model-base-path",
            "/m",
        ],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "batching.config",
        "models.config",
        "monitoring.config",
    ]
