"""One definition per fact: every command, default and document that restates one agrees with its source."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from tests.support import interfaces
from workloads import cli, models
from workloads.commands import infer_worker, pipeline, search, stream_ingest, train
from workloads.core.settings import ConfigError
from workloads.serving import tfs_config
from workloads.streaming import kafka
from workloads.streaming.infer_worker import MICRO_BATCH_SIZE, MICRO_BATCH_WAIT_MS, WorkerSettings
from workloads.workflow.search import Grid, SearchSettings

GRID_FIELDS = [f.name for f in dataclasses.fields(Grid)] + [
    f.name for f in dataclasses.fields(SearchSettings) if f.name not in {"data", "workdir", "grid"}
]


def defaults(config_type: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(config_type)}


@pytest.mark.parametrize("name", GRID_FIELDS)
def test_search_and_pipeline_share_every_grid_default(name):
    assert defaults(search.Config)[name] == defaults(pipeline.Config)[name]


def test_the_pipeline_builds_its_search_through_the_same_function_as_search(tmp_path):
    options = {
        "models": ("plain", "dropout"),
        "learning_rates": (0.01,),
        "batch_sizes": (96,),
        "epochs": 4,
        "seed": 7,
        "workers_per_trial": 3,
        "checkpoint_every": 5,
        "max_restarts": 1,
        "trial_timeout": 60.0,
        "collective_timeout": 30.0,
    }
    via_pipeline = pipeline.Config(workdir=str(tmp_path), **options).settings().search
    via_search = search.Config(
        data=str(tmp_path / "data"), workdir=str(tmp_path / "search"), **options
    ).settings()
    assert via_pipeline == via_search
    assert via_search.grid == Grid(("plain", "dropout"), (0.01,), (96,))


def test_batch_and_worker_rule_is_the_same_for_train_search_and_pipeline(tmp_path):
    messages = []
    for make in (
        lambda: train.Config(data="d", output="o", batch_size=64, local_workers=3),
        lambda: search.Config(data="d", workdir=str(tmp_path), batch_sizes=(64,), workers_per_trial=3),
        lambda: pipeline.Config(workdir=str(tmp_path), batch_sizes=(64,), workers_per_trial=3),
    ):
        with pytest.raises(ConfigError) as error:
            make()
        messages.append(error.value.message)
    assert all("the global batch size 64 must be a multiple of the 3 workers" in m for m in messages), (
        messages
    )


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_model_name_default_is_the_serving_model_name(command):
    fields = defaults(cli.load_command(command).Config)
    if "model_name" in fields:
        assert fields["model_name"] == tfs_config.MODEL_NAME


def test_the_model_variants_are_the_registry():
    assert defaults(search.Config)["models"] == tuple(models.model_names())
    assert tuple(train.Config.__dataclass_fields__["model"].metadata["choices"]) == tuple(
        models.model_names()
    )
    assert models.unknown_models(["plain", "resnet"]) == (
        f"unknown model(s) ['resnet']; valid models: {', '.join(models.model_names())}"
    )


def test_the_micro_batch_defaults_are_defined_once():
    flags = defaults(infer_worker.Config)
    assert (flags["max_batch_size"], flags["max_batch_wait_ms"]) == (MICRO_BATCH_SIZE, MICRO_BATCH_WAIT_MS)
    worker = WorkerSettings(requests_topic="a", results_topic="b", dlq_topic="c", model_name="m")
    assert (worker.max_batch_size, worker.max_batch_wait_s) == (MICRO_BATCH_SIZE, MICRO_BATCH_WAIT_MS / 1000)


def test_the_kafka_services_default_to_the_contract_topics_and_groups():
    worker, ingest = defaults(infer_worker.Config), defaults(stream_ingest.Config)
    topics = {worker["requests_topic"], worker["results_topic"], worker["dlq_topic"], ingest["topic"]}
    assert topics == {kafka.REQUESTS_TOPIC, kafka.RESULTS_TOPIC, kafka.DLQ_TOPIC, kafka.INGEST_TOPIC}
    assert topics == set(interfaces.names("Kafka topics"))
    assert (worker["group_id"], ingest["group_id"]) == (kafka.INFER_WORKER_GROUP, kafka.STREAM_INGEST_GROUP)


def test_the_contract_names_the_same_model_variants_and_serving_model():
    assert interfaces.names("Model variants") == models.model_names()
    assert interfaces.names("TF Serving model name") == [tfs_config.MODEL_NAME]


def test_no_workloads_module_restates_the_serving_model_name():
    root = pathlib.Path(__file__).resolve().parents[2] / "workloads"
    literal = f'"{tfs_config.MODEL_NAME}"'
    found = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if literal in path.read_text() and path.name != "tfs_config.py"
    ]
    assert not found, f"{literal} is defined in workloads/serving/tfs_config.py; import MODEL_NAME: {found}"
