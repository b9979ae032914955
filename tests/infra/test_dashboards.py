"""Dashboards and rules: every generated file becomes an object (zero files, many files, bad files)."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from infra.specs import monitoring
from tests.infra.program import ROOT, ProgramRun, run_program

pytestmark = pytest.mark.xdist_group(name="infra-program")
GENERATED = ROOT / "dashboards" / "generated"


def write_dashboard(directory: pathlib.Path, uid: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{uid}.json").write_text(
        json.dumps({"uid": uid, "title": uid, "panels": []}, sort_keys=True)
    )


def write_rules(directory: pathlib.Path, group: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rules = {"groups": [{"name": group, "rules": [{"record": "job:up:sum", "expr": "sum by (job) (up)"}]}]}
    (directory / f"{group}.rules.yaml").write_text(yaml.safe_dump(rules))


def test_no_generated_files_means_no_objects(tmp_path):
    assert monitoring.load_dashboards(tmp_path / "grafana") == []
    assert monitoring.load_rule_files(tmp_path / "prometheus") == []


def test_every_dashboard_becomes_a_sidecar_config_map(tmp_path):
    for uid in ("mlstack-training", "mlstack_serving", "GPU-Overview"):
        write_dashboard(tmp_path, uid)
    maps = [monitoring.dashboard_config_map(d) for d in monitoring.load_dashboards(tmp_path)]
    assert [m["metadata"]["name"] for m in maps] == [
        "grafana-dashboard-gpu-overview",
        "grafana-dashboard-mlstack-training",
        "grafana-dashboard-mlstack-serving",
    ]
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == "monitoring"
        ((key, text),) = config_map["data"].items()
        assert json.loads(text)["uid"] == key.removesuffix(".json")


def test_every_rule_file_becomes_a_prometheus_rule(tmp_path):
    for group in ("training", "serving"):
        write_rules(tmp_path, group)
    rules = [monitoring.prometheus_rule(r) for r in monitoring.load_rule_files(tmp_path)]
    assert [r["metadata"]["name"] for r in rules] == ["mlstack-serving", "mlstack-training"]
    assert rules[0]["spec"]["groups"][0]["name"] == "serving"


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"title": "x"}', "not a Grafana dashboard")],
)
def test_a_broken_dashboard_is_named_in_the_error(tmp_path, content, message):
    (tmp_path / "broken.json").write_text(content)
    with pytest.raises(monitoring.ContentError, match=f"broken.json: {message}"):
        monitoring.load_dashboards(tmp_path)


def test_a_rule_file_without_groups_is_named_in_the_error(tmp_path):
    (tmp_path / "empty.rules.yaml").write_text("rules: []\n")
    with pytest.raises(monitoring.ContentError, match=r"empty\.rules\.yaml: a Prometheus rule file needs"):
        monitoring.load_rule_files(tmp_path)


def test_two_files_that_map_to_one_object_name_are_both_named(tmp_path):
    write_dashboard(tmp_path, "gpu_overview")
    write_dashboard(tmp_path, "gpu-overview")
    with pytest.raises(
        monitoring.ContentError,
        match=r"gpu.overview\.json and .*gpu.overview\.json map to the same object name",
    ):
        monitoring.load_dashboards(tmp_path)


def test_the_program_deploys_every_dashboard_and_rule_file_it_finds(tmp_path, ansible_project):
    for uid in ("a", "b", "c"):
        write_dashboard(tmp_path / "grafana", uid)
    write_rules(tmp_path / "prometheus", "alerts")
    run, error, _ = run_program(
        "baremetal-example",
        {"mlstack:ansibleDir": str(ansible_project), "mlstack:dashboardsDir": str(tmp_path)},
    )
    assert error is None, error
    dashboards = [
        m for m in run.objects_of_kind("ConfigMap") if m["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert sorted(m["metadata"]["name"] for m in dashboards) == [f"grafana-dashboard-{uid}" for uid in "abc"]
    assert [r["metadata"]["name"] for r in run.objects_of_kind("PrometheusRule")] == ["mlstack-alerts"]


def test_every_file_in_the_repositorys_generated_directory_becomes_an_object(run: ProgramRun):
    dashboards = sorted(GENERATED.glob("grafana/*.json"))
    rule_files = sorted(GENERATED.glob("prometheus/*.rules.yaml"))
    deployed = {m["metadata"]["name"] for m in run.objects_of_kind("ConfigMap")}
    for path in dashboards:
        assert monitoring.object_name("grafana-dashboard", path.stem) in deployed, path
    rules = {r["metadata"]["name"] for r in run.objects_of_kind("PrometheusRule")}
    assert rules == {
        monitoring.object_name("mlstack", p.name.removesuffix(".rules.yaml")) for p in rule_files
    }


def test_the_gpu_alerts_labels_survive_the_dcgm_scrape(run: ProgramRun):
    """DCGM reports the ``namespace`` and ``pod`` using each GPU; without honorLabels Prometheus renames them
    ``exported_*`` to the exporter's own, and the GPU alerts, which group by them, never name a training pod."""
    from dashboards.rules import gpu as gpu_rules
    from infra.specs import gpu

    (recording,) = gpu_rules.group().recordings
    assert "by (namespace, pod)" in str(recording.expr)
    (monitor,) = [
        m for m in run.objects_of_kind("ServiceMonitor") if m["metadata"]["name"] == gpu.DCGM_EXPORTER
    ]
    assert [e.get("honorLabels") for e in monitor["spec"]["endpoints"]] == [True]
    others = [m for m in run.objects_of_kind("ServiceMonitor") if m["metadata"]["name"] != gpu.DCGM_EXPORTER]
    assert others and not any(e.get("honorLabels") for m in others for e in m["spec"]["endpoints"])
