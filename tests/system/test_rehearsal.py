"""The book's system as the cluster runs it, rehearsed here: the generated WorkflowTemplate and the Workflow
`python -m workloads workflow` renders, run by the rehearsal (tests/support/argo_rehearsal.py, the stand-in
for the Argo controller and the training operator), against a real HDFS laid out and owned as the hdfs
role leaves it, with every step acting as the pods' HDFS user, and serve-dev serving the model store
(tests/system/rig.py).

It proves the stages agree on every path, flag, file and parameter, that memoization is keyed on content
(a re-submission trains nothing; changing one grid point trains that point only), that a failed trial
does not fail a workflow with enough trials left, and that the exit handler records what failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from infra.specs.workload import WORKLOAD_USER
from tests.support.argo_rehearsal import Run
from tests.support.releases import HADOOP, required
from tests.system import rig
from tests.workloads.serving.processes import wait_until
from workloads.core import storage, tracking
from workloads.workflow import argo

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rehearsal")]


@pytest.fixture(scope="module")
def system(tmp_path_factory, mlflow_postgres_server) -> Iterator[rig.Rig]:
    """The rig with the stack's tracking server: a real MLflow server on PostgreSQL, as the cluster's."""
    home = required(HADOOP, tmp_path_factory.mktemp("hadoop-release"))
    with rig.running(home, tmp_path_factory.mktemp("system"), mlflow_postgres_server) as running:
        yield running


def workflow(models: tuple[str, ...], rates: tuple[float, ...] = (0.01,), min_trials: int = 1) -> dict:
    return rig.submission(models, rates, min_trials).workflow(argo.NAMESPACE)


def outcome(system: rig.Rig, run: Run) -> dict:
    return json.loads(storage.read_bytes(f"{system.store}/runs/outcomes/{run.name}.json"))


def tracked_champion(system: rig.Rig, promoted: dict):
    """The registry's champion, checked against what select promoted: the run of the trial it names, which
    its chief recorded in the trial's directory, with every step's loss."""
    uri = system.tracking_uri
    client = tracking.Tracking.at(uri).client()
    champion = client.get_model_version_by_alias(promoted["model_name"], tracking.CHAMPION)
    run = client.get_run(champion.run_id)
    assert (run.info.run_name, run.info.status) == (promoted["run_name"], "FINISHED")
    recorded = tracking.run_of_model(champion.tags[tracking.MODEL_URL_TAG])
    assert recorded == {"run_id": champion.run_id, "tracking_uri": uri}
    steps = [m.step for m in client.get_metric_history(champion.run_id, "loss")]
    assert sorted(steps) == list(range(1, int(run.data.metrics["steps"]) + 1))
    return champion


def test_the_template_runs_end_to_end_then_memoizes_on_content(system):
    first = system.rehearsal.submit(workflow(("plain", "dropout")))
    assert first.phase == "Succeeded", [(n.name, n.phase, n.message) for n in first.nodes]
    assert [n.memo_hit for n in first.trials()] == [False, False]
    promoted = json.loads(first.node("select").outputs["promoted"])
    assert promoted["version"] == 1 and first.node("verify-serving").phase == "Succeeded"
    assert system.served_version() == 1
    assert outcome(system, first)["status"] == "Succeeded"
    champion = tracked_champion(system, promoted)
    assert champion.tags["serving.version"] == "1"
    # The steps wrote as the pods' user, into the role's directories.
    assert system.hdfs.hdfs("dfs", "-stat", "%u", "/mlstack/models/runs").stdout.strip() == WORKLOAD_USER

    again = system.rehearsal.submit(workflow(("plain", "dropout")))
    assert again.phase == "Succeeded"
    assert [n.memo_hit for n in again.trials()] == [True, True]
    assert again.node("ingest").outputs == first.node("ingest").outputs  # same data, same digest
    assert json.loads(again.node("select").outputs["promoted"])["version"] == 1  # nothing promoted again

    changed = system.rehearsal.submit(workflow(("plain", "batchnorm")))
    assert changed.phase == "Succeeded"
    assert [n.memo_hit for n in changed.trials()] == [True, False]
    assert json.loads(changed.node("select").outputs["promoted"])["version"] == 2
    assert tracked_champion(system, json.loads(changed.node("select").outputs["promoted"])).version == "2"
    wait_until(lambda: system.served_version() == 2, 60, "serve-dev serving version 2")


def test_a_failed_trial_leaves_enough_to_select_and_the_exit_handler_records_it(system):
    rates = (0.01, 0.05)  # 0.01 trained (and memoized) above; 0.05 is new and will fail
    (new_point,) = [p for p in rig.submission(("plain",), rates).points() if p.trial.learning_rate == 0.05]
    broken = argo.trial_dir("/mlstack/models/runs", new_point.key)
    # Another user's directory where the new trial writes: it fails, as on a misconfigured cluster.
    for args in (
        ("-mkdir", "-p", broken),
        ("-chown", "-R", "alice:alice", broken),
        ("-chmod", "-R", "755", broken),
    ):
        assert system.hdfs.hdfs("dfs", *args).returncode == 0
    run = system.rehearsal.submit(workflow(("plain",), rates, min_trials=1))
    assert [(n.memo_hit, n.phase) for n in run.trials()] == [(True, "Succeeded"), (False, "Failed")]
    assert run.phase == "Succeeded" and run.node("select").phase == "Succeeded"
    assert [f["templateName"] for f in outcome(system, run)["failures"]] == ["trial"]

    strict = system.rehearsal.submit(workflow(("plain",), rates, min_trials=2))
    assert strict.phase == "Failed" and strict.node("select").phase == "Failed"
    assert strict.node("verify-serving").phase == "Omitted"
    assert {f["templateName"] for f in outcome(system, strict)["failures"]} == {"trial", "select"}
