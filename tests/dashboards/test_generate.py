"""Generation: the committed files are exactly what the builders produce, deterministically, atomically."""

import json
import subprocess
import sys

import pytest
import yaml

from dashboards import generate
from dashboards.boards import all_boards
from dashboards.panels import Graph, Query
from dashboards.rules import all_groups

from .conftest import DASHBOARD_FILES, ROOT, RULE_FILES


def test_committed_generated_files_match_the_builders():
    problems = generate.drift(ROOT)
    assert not problems, "\n".join(problems) + "\nRun `python -m dashboards` and commit the result."


def test_generation_is_deterministic():
    assert generate.render() == generate.render()


def test_every_dashboard_and_rule_group_has_its_own_file_at_the_agreed_path():
    assert [path.name for path in DASHBOARD_FILES] == sorted(f"{board.uid}.json" for board in all_boards())
    assert [path.name for path in RULE_FILES] == sorted(f"{group.name}.rules.yaml" for group in all_groups())


def test_generated_json_has_sorted_keys_and_stable_uids():
    for path in DASHBOARD_FILES:
        text = path.read_text()
        board = json.loads(text)
        assert text == json.dumps(board, sort_keys=True, indent=2) + "\n", f"{path}: keys not sorted"
        assert board["uid"] == path.stem


def test_generated_rule_files_have_sorted_keys():
    for path in RULE_FILES:
        data = yaml.safe_load(path.read_text())
        assert generate.RULES_HEADER + generate.dump_yaml(data) == path.read_text(), (
            f"{path}: keys not sorted"
        )


def test_generated_yaml_passes_yamllint_strict():
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "dashboards/generated", "tests/dashboards/promtool"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_mode_fails_naming_a_hand_edited_file_and_writing_regenerates_it(tmp_path):
    generate.write(tmp_path)
    edited = tmp_path / generate.GRAFANA_DIR / "mlstack-serving.json"
    edited.write_text(edited.read_text().replace("p99", "p98"))
    stale = tmp_path / generate.PROMETHEUS_DIR / "renamed-group.rules.yaml"
    stale.write_text("groups: []\n")
    env = {"PYTHONPATH": str(ROOT)}
    check = subprocess.run(
        [sys.executable, "-m", "dashboards", "--check", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert check.returncode == 1
    assert "dashboards/generated/grafana/mlstack-serving.json: differs" in check.stderr
    assert "renamed-group.rules.yaml: no builder generates it" in check.stderr
    write = subprocess.run(
        [sys.executable, "-m", "dashboards", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "2 file(s) changed" in write.stdout
    assert generate.drift(tmp_path) == []


def test_an_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "board.json"
    target.write_text("previous\n")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(generate.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        generate.write_atomic(target, "new\n")
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["board.json"], "temporary file left behind"


def test_a_log_scale_graph_cannot_start_at_zero():
    with pytest.raises(ValueError, match="'Latency'"):
        Graph("Latency", "", [Query("up")], log_scale=True, min=0)
