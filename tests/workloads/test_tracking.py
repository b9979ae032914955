"""Experiment tracking and the model registry against a real MLflow server (``mlflow_server``): a search
is a parent run with a child run per trial, selection registers and aliases the winner and promotes
exactly that version, a killed and resumed trial stays one run, and an unreachable server stops a
command before anything trains."""

from __future__ import annotations

import json
import logging
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests.workloads.support import ROOT, run_workloads, subprocess_env
from workloads.core import tracking
from workloads.data import datasets
from workloads.data.shards import ShardSet
from workloads.training import trained_model

TRIALS = ("plain-lr0.003-b64", "plain-lr0.01-b64")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _runs(uri: str) -> list:
    client = _client(uri)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _search(data: pathlib.Path, workdir: pathlib.Path, uri: str, *extra: str) -> list[str]:
    return [
        "search", "--data", str(data), "--workdir", str(workdir), "--models", "plain",
        "--batch-sizes", "64", "--workers-per-trial", "1", "--tracking-uri", uri, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def searched(mlflow_server, small_dataset, tmp_path_factory) -> pathlib.Path:
    """A 2x1 search (two learning rates, one batch size), one epoch, tracked on the server."""
    workdir = tmp_path_factory.mktemp("search")
    args = _search(
        small_dataset, workdir, mlflow_server, "--learning-rates", "0.003", "0.01", "--epochs", "1"
    )
    result = run_workloads(*args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.slow
@pytest.mark.xdist_group("mlflow")
def test_a_search_is_a_parent_run_with_one_child_run_per_trial(mlflow_server, small_dataset, searched):
    parent_id = json.loads((searched / tracking.RUN_FILE).read_text())["run_id"]
    children = {
        r.info.run_name: r for r in _runs(mlflow_server) if r.data.tags.get("mlflow.parentRunId") == parent_id
    }
    assert sorted(children) == sorted(TRIALS)
    client = _client(mlflow_server)
    assert client.get_run(parent_id).info.status == "FINISHED"
    digest = ShardSet.open(str(small_dataset / "train")).manifest.content_digest
    for name, run in children.items():
        record = trained_model.read_record(str(searched / "trials" / name / "model"))
        assert run.info.status == "FINISHED"
        assert run.data.params == {
            "model": "plain", "learning_rate": str(record.learning_rate), "batch_size": "64",
            "workers": "1", "framework": "tensorflow", "strategy": "multi-worker-mirrored",
            "seed": "0", "epochs": "1",
        }  # fmt: skip
        assert run.data.tags["dataset.digest"] == digest
        assert run.inputs.dataset_inputs[0].dataset.source == str(small_dataset / "train")
        assert run.data.metrics["steps"] == record.steps == 2048 // 64  # small_dataset, one epoch
        assert run.data.metrics["final_mean_loss"] == pytest.approx(record.history[-1]["mean_loss"])
        losses = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in losses) == list(range(1, record.steps + 1))  # every step, the chief's
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
        assert artifacts == {"model/model.keras", "model/training.json"}


@pytest.mark.slow
@pytest.mark.xdist_group("mlflow")
def test_selection_registers_the_winner_as_champion_and_promotes_that_version(
    mlflow_server, small_dataset, searched, tmp_path
):
    base, promoted = tmp_path / "models", tmp_path / "promoted.json"
    result = run_workloads(
        "select", "--candidates", str(searched / "trials"), "--data", str(small_dataset),
        "--model-base-path", str(base), "--model-name", "tracked_model", "--min-accuracy", "0",
        "--promoted-output", str(promoted), "--tracking-uri", mlflow_server, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = _client(mlflow_server)
    champion = client.get_model_version_by_alias("tracked_model", tracking.CHAMPION)
    served = json.loads(promoted.read_text())
    run = client.get_run(champion.run_id)
    assert served["run_name"] == run.info.run_name  # the aliased version is the one served
    assert champion.tags["serving.version"] == str(served["version"])
    assert champion.tags["serving.url"] == served["url"]
    assert champion.tags["dataset.digest"] == run.data.tags["dataset.digest"]
    parent = run.data.tags["mlflow.parentRunId"]
    ranking = pathlib.Path(client.download_artifacts(parent, "selection/ranking.json", str(tmp_path)))
    assert json.loads(ranking.read_text())["winner"]["run_name"] == served["run_name"]
    assert (base / "tracked_model" / str(served["version"]) / "saved_model.pb").exists()


@pytest.mark.slow
@pytest.mark.xdist_group("mlflow")
def test_a_killed_and_resumed_trial_is_one_run(mlflow_server, tmp_path):
    data = tmp_path / "data"
    datasets.ingest_synthetic(str(data), train_records=4096, test_records=64, seed=0, shard_size=1024)
    workdir = tmp_path / "search"
    args = _search(data, workdir, mlflow_server, "--learning-rates", "0.003", "--epochs", "10")
    args += ["--checkpoint-every", "4"]
    command = [sys.executable, "-m", "workloads", *args]
    search = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL)
    latest = workdir / "trials" / TRIALS[0] / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 240
    while not latest.exists() and search.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    search.send_signal(signal.SIGTERM)
    assert search.wait(timeout=120) == 128 + signal.SIGTERM
    run_id = json.loads((workdir / "trials" / TRIALS[0] / tracking.RUN_FILE).read_text())["run_id"]
    killed = _client(mlflow_server).get_run(run_id)
    assert (killed.info.status, killed.data.tags["failure_reason"]) == ("KILLED", "stopped by SIGTERM")

    result = run_workloads(*args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = trained_model.read_record(str(workdir / "trials" / TRIALS[0] / "model"))
    assert record.resumed_from_step > 0
    children = [r for r in _runs(mlflow_server) if r.data.tags.get("dataset.url") == str(data / "train")]
    assert [(r.info.run_id, r.info.status) for r in children] == [(run_id, "FINISHED")]
    assert children[0].data.tags["resumed_after"] == "stopped by SIGTERM"
    assert "failure_reason" not in children[0].data.tags
    steps = [m.step for m in _client(mlflow_server).get_metric_history(run_id, "loss")]
    assert len(steps) == len(set(steps)) and max(steps) == record.steps, "no step logged twice"


@pytest.mark.slow
@pytest.mark.xdist_group("mlflow")
def test_an_unreachable_tracking_server_fails_the_search_before_training(small_dataset, tmp_path, free_port):
    workdir = tmp_path / "search"
    result = run_workloads(*_search(small_dataset, workdir, f"http://127.0.0.1:{free_port}"), timeout=120)
    assert result.returncode == 1
    assert (
        f"--tracking-uri (or MLFLOW_TRACKING_URI): cannot reach the MLflow tracking server at http://127.0.0.1:{free_port}"
        in result.stderr
    )
    assert not (workdir / "trials").exists()


def test_no_tracking_says_so_once_and_tracks_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(tracking.URI_VARIABLE, "http://127.0.0.1:1")  # never reached
    with caplog.at_level(logging.WARNING):
        assert tracking.resolve(None, True, tmp_path) is None
    assert [r.getMessage() for r in caplog.records] == [
        "tracking off (--no-tracking): nothing of this run is recorded in MLflow"
    ]
    assert list(tmp_path.iterdir()) == []


def test_without_a_uri_runs_go_to_a_sqlite_store_in_the_work_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(tracking.URI_VARIABLE, raising=False)
    workdir = tmp_path / "w"
    tracked = tracking.resolve(None, False, workdir)
    assert tracked == tracking.Tracking(f"sqlite:///{workdir}/mlflow.db", (workdir / "mlartifacts").as_uri())
    assert not workdir.exists(), "the store opens at first use, after the command's own checks"
    tracking.experiment_id(tracked)
    experiment = tracked.client().get_experiment_by_name(tracking.EXPERIMENT)
    assert experiment.artifact_location == (workdir / "mlartifacts").as_uri()
    assert str(workdir / "mlflow.db") in tracking.ui_command(tracked)


@pytest.mark.slow
@pytest.mark.xdist_group("mlflow")
def test_the_pipeline_tracks_into_its_work_directory_and_ends_with_the_ui_command(tmp_path):
    env = {k: v for k, v in subprocess_env().items() if k != tracking.URI_VARIABLE}
    result = run_workloads(
        "pipeline", "--workdir", str(tmp_path), "--synthetic-train", "1024", "--synthetic-test", "256",
        "--shard-size", "512", "--models", "plain", "--learning-rates", "0.003", "--epochs", "1",
        "--workers-per-trial", "1", "--min-accuracy", "0", env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    store = f"sqlite:///{tmp_path}/mlflow.db"
    assert result.stdout.strip().splitlines()[-1] == (
        f"Open the MLflow UI on its runs: {sys.executable} -m mlflow ui --backend-store-uri {store} --port 5000"
    )
    champion = _client(store).get_model_version_by_alias("fashion_mnist", tracking.CHAMPION)
    assert champion.tags["serving.version"] == "1"
    assert champion.source.startswith((tmp_path / "mlartifacts").as_uri())
    assert (
        champion.run_id
        == json.loads((tmp_path / "search" / "trials" / TRIALS[0] / tracking.RUN_FILE).read_text())["run_id"]
    )


@pytest.mark.slow
@pytest.mark.xdist_group("mlflow")
def test_a_failed_trial_is_a_failed_run_with_its_reason(mlflow_server, small_dataset, tmp_path):
    workdir = tmp_path / "search"
    args = _search(small_dataset, workdir, mlflow_server, "--learning-rates", "0.003", "--trial-timeout", "1")
    result = run_workloads(*args, "--max-restarts", "0", timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    client = _client(mlflow_server)
    trial = client.get_run(
        json.loads((workdir / "trials" / TRIALS[0] / tracking.RUN_FILE).read_text())["run_id"]
    )
    failure = json.loads((workdir / "search.json").read_text())["trials"][0]["error"]
    assert (trial.info.status, trial.data.tags["failure_reason"]) == ("FAILED", failure)
    search = client.get_run(json.loads((workdir / tracking.RUN_FILE).read_text())["run_id"])
    assert search.info.status == "FAILED"
    assert search.data.tags["failure_reason"].startswith("every trial failed")


@pytest.mark.slow
@pytest.mark.xdist_group("mlflow")
@pytest.mark.parametrize("server", ["mlflow_server", "mlflow_postgres_server"], ids=["sqlite", "postgresql"])
def test_a_train_with_a_tracking_uri_is_its_own_run_that_select_registers_and_export_serves(
    server, small_dataset, tmp_path, request
):
    """The workflow's trials: `train` in a pod with MLFLOW_TRACKING_URI and no search around it; against
    both backend stores (the cluster's server keeps its runs in PostgreSQL)."""
    mlflow_server = request.getfixturevalue(server)
    candidates, base = tmp_path / "runs", tmp_path / "models"
    model_dir = candidates / "trial-a" / "model"
    env = {**subprocess_env(), tracking.URI_VARIABLE: mlflow_server}
    train = ["train", "--data", str(small_dataset), "--output", str(model_dir), "--epochs", "1"]
    result = run_workloads(*train, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_id = json.loads((candidates / "trial-a" / tracking.RUN_FILE).read_text())["run_id"]
    client = _client(mlflow_server)
    run = client.get_run(run_id)
    record = trained_model.read_record(str(model_dir))
    assert (run.info.status, run.info.run_name) == ("FINISHED", "model")
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.data.params["world_size"] == "1" and run.data.params["model"] == "plain"
    assert run.data.tags[tracking.MODEL_URL_TAG] == str(model_dir)
    losses = client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in losses) == list(range(1, record.steps + 1))

    select = [
        "select", "--candidates", str(candidates), "--data", str(small_dataset), "--min-accuracy", "0",
        "--model-base-path", str(base), "--model-name", "own_runs", "--tracking-uri", mlflow_server,
    ]  # fmt: skip
    assert run_workloads(*select, timeout=300).returncode == 0
    again = run_workloads(*select, "--reuse-promoted", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    versions = client.search_model_versions("name = 'own_runs'")
    assert [(v.version, v.run_id) for v in versions] == [("1", run_id)], "selected twice, registered once"

    export = ["export", "--registered-model", "own_runs", "--model-base-path", str(base / "exported")]
    result = run_workloads(*export, "--tracking-uri", mlflow_server, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(base / "exported" / "fashion_mnist" / "1")
    champion = client.get_model_version_by_alias("own_runs", tracking.CHAMPION)
    assert champion.tags["serving.url"] == result.stdout.strip()


def test_export_of_a_registered_model_without_a_champion_names_the_flag(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.experiment_id(tracking.Tracking.at(store))
    _client(store).create_registered_model("unaliased")
    base = tmp_path / "models"
    for name in ("unaliased", "absent"):
        result = run_workloads(
            "export", "--registered-model", name, "--model-base-path", str(base), "--tracking-uri", store
        )
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert f"--registered-model: no version of registered model {name!r} is aliased 'champion'" in line
        assert not base.exists()


def test_a_name_the_registry_refuses_registers_nothing(tmp_path):
    tracked = tracking.Tracking.at(f"sqlite:///{tmp_path}/mlflow.db")
    client = tracked.client()
    run_id = client.create_run(tracking.experiment_id(tracked)).info.run_id
    with pytest.raises(tracking.WorkloadError, match="--model-name: the MLflow registry refused it: Invalid"):
        tracking.register_champion(tracked, "bad:name", run_id, {"ranking.json": "{}"})
    assert client.search_registered_models() == []
    assert client.search_model_versions(f"run_id = '{run_id}'") == []


def test_a_resumed_run_does_not_log_again_the_steps_it_has(tmp_path, monkeypatch):
    tracked = tracking.Tracking.at(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = tracked.client().create_run(tracking.experiment_id(tracked)).info.run_id
    monkeypatch.setenv(tracking.URI_VARIABLE, tracked.uri)
    monkeypatch.setenv(tracking.RUN_VARIABLE, run_id)
    before = tracking.StepLogger.for_worker(is_chief=True)
    for step in range(1, 61):  # killed after step 60, its last checkpoint at step 40
        before.step(step, 1.0, 10.0, last=step == 60)
    after = tracking.StepLogger.for_worker(is_chief=True)
    assert after.logged_through == 60
    for step in range(41, 81):
        after.step(step, 0.5, 10.0, last=step == 80)
    losses = tracked.client().get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in losses) == [(s, 1.0 if s <= 60 else 0.5) for s in range(1, 81)]
    assert tracking.StepLogger.for_worker(is_chief=False) is None
