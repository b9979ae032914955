"""The steps of the Argo workflow (infra/specs/workflow.py), command by command: what each does with the
arguments the template gives it, and the files it leaves for Argo to read as output parameters
(workloads/workflow/argo.py)."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.workloads.conftest import MODEL
from tests.workloads.serving.processes import start_dev_server
from workloads import cli
from workloads.core import storage
from workloads.data import datasets
from workloads.data.shards import ShardSet
from workloads.workflow import argo
from workloads.workflow.search import Trial
from workloads.workflow.selection import Promotion

TEXT = ("--log-format", "text")


def error_lines(err: str, text: str) -> list[str]:
    """The lines of ``err`` that hold ``text``; a clear error is exactly one, and never a traceback."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if text in line]


# ingest --------------------------------------------------------------------------------------------


def ingest(output, *extra: str) -> int:
    small = ("--synthetic-train", "64", "--synthetic-test", "32", "--shard-size", "32")
    return cli.main(["ingest", "--output", str(output), *small, *TEXT, *extra])


def test_an_empty_data_flag_means_synthetic_data(tmp_path):
    assert ingest(tmp_path / "data", "--data=") == 0
    manifest = ShardSet.open(str(tmp_path / "data" / "train")).manifest
    assert manifest.metadata["source"]["kind"] == "synthetic" and manifest.records == 64


def test_the_digest_output_is_one_line_of_hex_the_same_for_the_same_records(tmp_path):
    digest_file = tmp_path / "outputs" / "dataset-digest"  # its directory does not exist yet
    assert ingest(tmp_path / "data", "--data=", "--digest-output", str(digest_file)) == 0
    first = digest_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{20}", first), f"not one line of short hex: {first!r}"

    assert ingest(tmp_path / "data", "--digest-output", str(digest_file)) == 0  # re-ingest: nothing new
    elsewhere = tmp_path / "other-digest"
    assert ingest(tmp_path / "copy", "--digest-output", str(elsewhere)) == 0  # same records, another place
    assert digest_file.read_text() == first == elsewhere.read_text()

    assert ingest(tmp_path / "seeded", "--seed", "1", "--digest-output", str(digest_file)) == 0
    assert digest_file.read_text() != first


def test_the_dataset_digest_follows_the_records_of_every_split(tmp_path):
    def manifests(test_records: int) -> dict:
        out = str(tmp_path / f"test-{test_records}")
        return datasets.ingest_synthetic(
            out, train_records=64, test_records=test_records, seed=0, shard_size=32
        )

    same, other = manifests(32), manifests(31)
    assert datasets.dataset_digest(same) == datasets.dataset_digest(manifests(32))
    assert datasets.dataset_digest(same) != datasets.dataset_digest(other)
    assert datasets.dataset_digest(same) != datasets.dataset_digest({"train": same["train"]})


# select --------------------------------------------------------------------------------------------


def points(*models: str) -> list[argo.Point]:
    return [argo.Point("tensorflow", Trial(model, 0.01, 32), 1, 0, 1) for model in models]


def grid_json(grid: list[argo.Point]) -> str:
    return json.dumps([point.item() for point in grid])


def save_trained(url: str, name: str, seed: int, data: str) -> None:
    """An (untrained) model saved as every trainer saves one."""
    from workloads import models
    from workloads.training import trained_model

    record = trained_model.TrainingRecord(
        run_name=name, framework="tensorflow", strategy="multi-worker-mirrored", model="plain",
        learning_rate=0.01, batch_size=32, epochs=0, seed=seed, data=data, world_size=1, steps=0,
        resumed_from_step=0, history=[], wall_seconds=0.0, weights_sha256="", created_at=time.time(),
    )  # fmt: skip
    trained_model.save(url, models.build_model("plain", seed=seed), record)


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """A dataset, and a grid of three trials under RUNS of which the last failed (no model)."""
    root = tmp_path_factory.mktemp("trials")
    dataset = str(root / "dataset")
    datasets.ingest_synthetic(dataset, train_records=64, test_records=200, seed=0, shard_size=100)
    grid = points("plain", "dropout", "batchnorm")
    runs = str(root / "runs")
    for seed, point in enumerate(grid[:2]):
        save_trained(f"{argo.trial_dir(runs, point.key)}/model", point.trial.name, seed, dataset)
    return dataset, runs, grid


def select(trials, tmp_path, *extra: str) -> int:
    dataset, runs, grid = trials
    args = ["--grid", grid_json(grid), "--runs", runs, "--data", dataset, "--min-accuracy", "0"]
    return cli.main(["select", *args, "--model-base-path", str(tmp_path / "models"), *TEXT, *extra])


def test_select_skips_a_failed_trial_and_writes_what_it_promoted(trials, tmp_path, capsys):
    dataset, runs, grid = trials
    promoted_file = tmp_path / "outputs" / "promoted.json"
    results = tmp_path / "results.json"
    args = ("--min-candidates", "2", "--promoted-output", str(promoted_file), "--results", str(results))
    assert select(trials, tmp_path, *args) == 0
    failed = f"{argo.trial_dir(runs, grid[2].key)}/model"
    assert len(error_lines(capsys.readouterr().err, failed)) == 1  # one warning, naming the failed trial
    promoted = json.loads(promoted_file.read_text())
    winner = json.loads(results.read_text())["winner"]
    assert promoted == {
        "model_name": MODEL,
        "version": 1,
        "url": str(tmp_path / "models" / MODEL / "1"),
        "run_name": winner["run_name"],
        "metric": "accuracy",
        "accuracy": winner["accuracy"],
        "data": str(storage.join(dataset, "test")),
    }
    assert {c["run_name"] for c in json.loads(results.read_text())["candidates"]} == {
        p.trial.name for p in grid[:2]
    }
    assert Promotion.parse(promoted_file.read_text()).version == 1


def test_reuse_promoted_adds_no_version_for_the_same_winner_but_does_for_a_retrained_one(trials, tmp_path):
    _, runs, grid = trials

    def promoted_version(output) -> int:
        args = ("--min-candidates", "2", "--reuse-promoted", "--promoted-output", str(output))
        assert select(trials, tmp_path, *args) == 0
        return json.loads(output.read_text())["version"]

    assert [promoted_version(tmp_path / "first.json"), promoted_version(tmp_path / "again.json")] == [1, 1]
    (point,) = [
        p for p in grid if p.trial.name == json.loads((tmp_path / "first.json").read_text())["run_name"]
    ]
    # Trained again in the same directory: another model, so a new version.
    save_trained(f"{argo.trial_dir(runs, point.key)}/model", point.trial.name, 0, trials[0])
    assert promoted_version(tmp_path / "retrained.json") == 2
    provenance = tmp_path / "models" / MODEL / "2" / "assets.extra" / "provenance.json"
    assert json.loads(provenance.read_text())["trained_model"] == f"{argo.trial_dir(runs, point.key)}/model"


def test_fewer_trials_than_min_candidates_fails_in_one_line_and_promotes_nothing(trials, tmp_path, capsys):
    _, runs, grid = trials
    promoted_file = tmp_path / "promoted.json"
    assert select(trials, tmp_path, "--min-candidates", "3", "--promoted-output", str(promoted_file)) == 1
    (line,) = error_lines(capsys.readouterr().err, "--min-candidates 3")
    assert "found 2" in line and f"{argo.trial_dir(runs, grid[2].key)}/model" in line
    assert not (tmp_path / "models").exists() and not promoted_file.exists()


def test_without_min_candidates_every_trial_of_the_grid_must_exist(trials, tmp_path, capsys):
    _, runs, grid = trials
    assert select(trials, tmp_path) == 1
    (line,) = error_lines(capsys.readouterr().err, "does not exist")
    assert f"{argo.trial_dir(runs, grid[2].key)}/model" in line
    assert not (tmp_path / "models").exists()


GRID = grid_json(points("plain"))


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--grid", "[{", "--runs", "/r"], "--grid"),
        (["--grid", '{"key": "k"}', "--runs", "/r"], "--grid"),
        (["--grid", '[{"name": "no-key"}]', "--runs", "/r"], "--grid"),
        (["--grid", "[]", "--runs", "/r"], "--grid"),
        (["--grid", GRID], "--runs"),
        (["--runs", "/r", "--candidates", "/c"], "--grid"),
        ([], "--candidates"),
        (["--candidates", "/c", "--promoted-output", "/p.json"], "--promoted-output"),
        (["--grid", GRID, "--runs", "/r", "--min-candidates", "0"], "--min-candidates"),
    ],
)
def test_bad_select_settings_exit_2_naming_the_flag(args, flag, tmp_path, capsys):
    assert cli.main(["select", "--data", str(tmp_path), *args, *TEXT]) == 2
    assert error_lines(capsys.readouterr().err, f"error: {flag}: ")


# verify-serving ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """select promotes a trial's model (as the workflow's select step does), serve-dev serves it."""
    root = tmp_path_factory.mktemp("served")
    dataset = str(root / "dataset")
    datasets.ingest_synthetic(dataset, train_records=64, test_records=250, seed=3, shard_size=100)
    (point,) = points("plain")
    runs = str(root / "runs")
    save_trained(f"{argo.trial_dir(runs, point.key)}/model", point.trial.name, 7, dataset)
    promoted_file = root / "promoted.json"
    select_args = ["--grid", grid_json([point]), "--runs", runs, "--data", dataset, "--min-accuracy", "0"]
    select_args += ["--model-base-path", str(root / "models"), "--promoted-output", str(promoted_file)]
    assert cli.main(["select", *select_args, *TEXT]) == 0
    server = start_dev_server(
        root / "serve-dev", "--model-base-path", str(root / "models" / MODEL), "--model-name", MODEL
    )
    yield server, dataset, json.loads(promoted_file.read_text())
    assert server.terminate() == 0, server.log()[-3000:]


def verify(served, promoted: dict, *extra: str) -> int:
    server, dataset, _ = served
    args = ["--server-url", server.rest_url, "--promoted", json.dumps(promoted), "--data", dataset]
    return cli.main(["verify-serving", *args, *TEXT, *extra])


@pytest.mark.slow
def test_over_the_whole_split_the_served_accuracy_equals_the_promoted_one(served, capsys):
    _, _, promoted = served
    assert verify(served, promoted, "--records", "1000", "--tolerance", "0.001") == 0
    out = capsys.readouterr().out
    assert f"version {promoted['version']}" in out and "on 250 held-out records agrees" in out
    assert "the whole held-out split" in out


@pytest.mark.slow
def test_a_sample_is_checked_within_standard_errors_over_either_signature(served, capsys):
    _, _, promoted = served
    assert verify(served, promoted, "--records", "50", "--signature", "serving_bytes") == 0
    out = capsys.readouterr().out
    assert "on 50 held-out records agrees" in out and "4 standard errors" in out


@pytest.mark.slow
def test_answers_that_disagree_with_the_promoted_accuracy_fail_in_one_line(served, capsys):
    _, _, promoted = served
    wrong = {**promoted, "accuracy": round(1 - promoted["accuracy"], 5)}  # an untrained model: far off
    assert verify(served, wrong, "--records", "1000") == 1
    (line,) = error_lines(capsys.readouterr().err, "disagrees with the promoted")
    assert "the whole held-out split" in line


@pytest.mark.slow
def test_a_version_that_never_becomes_available_fails_after_the_wait(served, capsys):
    _, _, promoted = served
    missing = {**promoted, "version": promoted["version"] + 5}
    started = time.monotonic()
    assert verify(served, missing, "--wait", "1") == 1
    assert time.monotonic() - started < 30
    (line,) = error_lines(capsys.readouterr().err, "was not AVAILABLE within 1 s")
    assert f"version {missing['version']}" in line


PROMOTED = Promotion(MODEL, 1, "/m/1", "run", "accuracy", 0.9, "/d/test").to_json()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--promoted", "{not json"], "--promoted"),
        (["--promoted", '{"version": 1}'], "--promoted"),
        (["--promoted", PROMOTED.replace('"version":1', '"version":0')], "--promoted"),
        (["--promoted", PROMOTED.replace("0.9", "1.5")], "--promoted"),
        (["--promoted", PROMOTED, "--model-name", "other"], "--promoted"),
        (["--promoted", PROMOTED, "--version", "2"], "--version"),
        (["--promoted", PROMOTED, "--tolerance", "2"], "--tolerance"),
        (["--promoted", PROMOTED, "--records", "0"], "--records"),
    ],
)
def test_bad_verify_settings_exit_2_naming_the_flag(args, flag, capsys):
    assert cli.main(["verify-serving", "--data", "/d", *args, *TEXT]) == 2
    assert error_lines(capsys.readouterr().err, f"error: {flag}: ")


# record-outcome ------------------------------------------------------------------------------------

FAILURES = [
    {
        "displayName": "trial(1:batchnorm)",
        "message": "job failed: Worker exited 1",
        "templateName": "trial",
        "phase": "Failed",
        "podName": "p-1",
        "finishedAt": "2025-01-01T00:00:00Z",
    },
    {
        "displayName": "select",
        "message": "--min-candidates 2: found 1",
        "templateName": "select",
        "phase": "Failed",
        "podName": "p-2",
        "finishedAt": "2025-01-01T00:01:00Z",
    },
]


def record(output, status: str, failures: str) -> int:
    args = ["--workflow", "wf-1", "--status", status, "--failures", failures, "--output", str(output)]
    return cli.main(["record-outcome", *args, *TEXT])


def test_the_exit_handler_records_the_status_and_logs_each_failure(tmp_path, capsys):
    output = tmp_path / "outcomes" / "wf-1.json"
    assert record(output, "Failed", json.dumps(FAILURES)) == 0
    outcome = json.loads(output.read_text())
    assert {k: outcome[k] for k in ("workflow", "status", "failures")} == {
        "workflow": "wf-1",
        "status": "Failed",
        "failures": FAILURES,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", outcome["recorded_at"])
    err = capsys.readouterr().err
    for failure in FAILURES:
        (line,) = error_lines(err, failure["displayName"] + " ")
        assert failure["message"] in line


@pytest.mark.parametrize("failures", ["", "null"])
def test_no_failures_record_an_empty_list(tmp_path, failures):
    assert record(tmp_path / "outcome.json", "Succeeded", failures) == 0
    assert json.loads((tmp_path / "outcome.json").read_text())["failures"] == []


def test_failures_that_are_not_a_json_list_are_recorded_as_text(tmp_path, capsys):
    assert record(tmp_path / "outcome.json", "Error", "{{workflow.failures}}") == 0
    assert json.loads((tmp_path / "outcome.json").read_text())["failures"] == "{{workflow.failures}}"
    assert error_lines(capsys.readouterr().err, "--failures is not a JSON list")


def test_an_outcome_that_cannot_be_written_fails_in_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("a file where a directory should be")
    output = tmp_path / "file" / "outcomes" / "wf-1.json"
    assert record(output, "Succeeded", "") == 1
    assert error_lines(capsys.readouterr().err, str(output))


def test_the_outcome_goes_to_object_storage_too(s3_bucket):
    url = f"s3://{s3_bucket}/runs/outcomes/wf-1.json"
    assert record(url, "Failed", json.dumps(FAILURES[:1])) == 0
    assert json.loads(storage.read_bytes(url))["failures"] == FAILURES[:1]


# the template -------------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", sorted(argo.FRAMEWORKS))
def test_every_step_of_the_template_is_accepted_by_its_command(framework):
    """Each container step's args, its parameters filled in with their defaults and a grid, resolve into
    its command's settings (the rehearsal in tests/system runs them)."""
    from infra.config import Images
    from infra.specs import workflow
    from workloads.core import settings

    template = workflow.workflow_template(
        framework, Images("registry.example", "1.0"), workflow.WorkflowDefaults()
    )
    values = {p["name"]: p.get("value", "") for p in template["spec"]["arguments"]["parameters"]}
    filled = {
        **{f"workflow.parameters.{name}": value for name, value in values.items()},
        "workflow.parameters.grid": grid_json(points("plain")),
        "inputs.parameters.promoted": PROMOTED,
        "workflow.name": "wf-1",
        "workflow.status": "Failed",
        "workflow.failures": "null",
    }
    steps = [t for t in template["spec"]["templates"] if "container" in t]
    for step in steps:
        command = step["container"]["command"][-1]
        args = [re.sub(r"\{\{([^}]+)\}\}", lambda m: filled[m[1]], arg) for arg in step["container"]["args"]]
        flags = vars(cli.build_parser().parse_args([command, *args]))
        given = {k: v for k, v in flags.items() if k not in {"command", "config", "log_format", "log_level"}}
        settings.resolve(cli.load_command(command).Config, given, {})
    assert {s["container"]["command"][-1] for s in steps} == {
        "ingest",
        "select",
        "verify-serving",
        "record-outcome",
    }
