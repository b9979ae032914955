"""promtool unit tests: every alert has a case where it fires and one where it does not, and all pass."""

import pathlib
import shutil

import pytest
import yaml

from dashboards import contract

from .conftest import PROMTOOL_TESTS, ROOT, RULE_FILES, require_binary


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file):
    require_binary("promtool")
    failure = contract.promtool_test_rules(test_file)
    assert failure is None, failure


def test_every_alert_has_a_firing_and_a_non_firing_promtool_case():
    problems = contract.promtool_coverage_problems(RULE_FILES, PROMTOOL_TESTS)
    assert not problems, "\n".join(problems)


def test_every_rule_group_has_a_promtool_test_file_that_loads_it():
    for rule_file in RULE_FILES:
        test_file = rule_file.name.replace(".rules.yaml", ".test.yaml")
        assert test_file in [p.name for p in PROMTOOL_TESTS], (
            f"{rule_file}: no tests/dashboards/promtool/{test_file}"
        )


def test_a_new_alert_without_tests_is_reported_by_name(tmp_path):
    rules = tmp_path / "new.rules.yaml"
    rules.write_text(
        "groups:\n- name: new\n  rules:\n"
        "  - alert: BrandNewAlert\n    expr: up == 0\n    for: 1m\n"
        "  - alert: HalfTestedAlert\n    expr: up == 2\n    for: 1m\n"
    )
    tests = tmp_path / "new.test.yaml"
    tests.write_text(
        "tests:\n- input_series: []\n  alert_rule_test:\n"
        "  - {eval_time: 1m, alertname: HalfTestedAlert, exp_alerts: []}\n"
    )
    problems = contract.promtool_coverage_problems([rules], [tests])
    assert problems == [
        f"{rules}: alert BrandNewAlert: no promtool test case where it is firing",
        f"{rules}: alert BrandNewAlert: no promtool test case where it is not firing",
        f"{rules}: alert HalfTestedAlert: no promtool test case where it is firing",
    ]


def test_a_wrong_expectation_fails_promtool_and_names_the_test_file(tmp_path):
    require_binary("promtool")
    shutil.copy(ROOT / "dashboards/generated/prometheus/mlstack-nodes.rules.yaml", tmp_path)
    wrong = tmp_path / "wrong.test.yaml"
    wrong.write_text(
        "rule_files: [mlstack-nodes.rules.yaml]\n"
        "tests:\n- interval: 1m\n"
        "  input_series:\n  - {series: 'up{job=\"node-exporter\", instance=\"a\"}', values: '1x10'}\n"
        "  alert_rule_test:\n"
        "  - eval_time: 10m\n    alertname: NodeDown\n"
        "    exp_alerts: [{exp_labels: {severity: critical, job: node-exporter, instance: a}}]\n"
    )
    failure = contract.promtool_test_rules(wrong)
    assert failure is not None
    assert str(wrong) in failure and "NodeDown" in failure


def test_promtool_test_files_load_the_generated_rule_files():
    for test_file in PROMTOOL_TESTS:
        data = yaml.safe_load(test_file.read_text())
        loaded = [(test_file.parent / path).resolve() for path in data["rule_files"]]
        assert loaded == [
            (ROOT / "dashboards/generated/prometheus" / test_file.name.replace(".test.", ".rules.")).resolve()
        ]
        assert all(pathlib.Path(path).exists() for path in loaded)
