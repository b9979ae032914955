"""The cluster environment: TF_CONFIG as the TFJob operator writes it, torchrun's variables, or one process."""

import json

import pytest

from workloads.core.errors import ClusterConfigError
from workloads.training import cluster


def tf_config(cluster_spec, task_type, index):
    return {"TF_CONFIG": json.dumps({"cluster": cluster_spec, "task": {"type": task_type, "index": index}})}


WORKERS = {"worker": ["w0:2222", "w1:2222", "w2:2222"]}
WITH_CHIEF = {"chief": ["c0:2222"], "worker": ["w0:2222", "w1:2222"], "ps": ["p0:2222"]}


def test_without_a_chief_worker_zero_is_the_chief():
    infos = [cluster.detect(tf_config(WORKERS, "worker", i)) for i in range(3)]
    assert [(i.rank, i.is_chief, i.world_size) for i in infos] == [(0, True, 3), (1, False, 3), (2, False, 3)]


def test_with_a_chief_the_chief_is_rank_zero_and_workers_follow():
    chief = cluster.detect(tf_config(WITH_CHIEF, "chief", 0))
    worker = cluster.detect(tf_config(WITH_CHIEF, "worker", 1))
    assert (chief.rank, chief.is_chief, chief.world_size) == (0, True, 3)
    assert (worker.rank, worker.is_chief) == (2, False)
    assert chief.has_parameter_servers


@pytest.mark.parametrize("task", ["ps", "evaluator"])
def test_ps_and_evaluator_tasks_are_not_training_replicas(task):
    info = cluster.detect(tf_config(WITH_CHIEF, task, 0))
    assert info.rank is None and not info.is_chief and not info.is_training_replica


def test_the_kubeflow_operator_format_with_environment_key_is_accepted():
    raw = {
        "cluster": {"worker": ["job-worker-0.ns.svc:2222", "job-worker-1.ns.svc:2222"]},
        "task": {"type": "worker", "index": 1},
        "environment": "cloud",
    }
    assert cluster.detect({"TF_CONFIG": json.dumps(raw)}).rank == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "TF_CONFIG.cluster is missing"),
        (json.dumps({"cluster": WORKERS}), "TF_CONFIG.task is missing"),
        (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": 3}}), "lists 3 task"),
        (json.dumps({"cluster": WORKERS, "task": {"type": "master", "index": 0}}), "task.type is 'master'"),
        (json.dumps({"cluster": WORKERS, "task": {"type": "worker", "index": -1}}), "non-negative"),
        (json.dumps({"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker"}}), "not 'host:port'"),
        (json.dumps({"cluster": {"worker": "w0:1"}, "task": {"type": "worker"}}), "must be a list"),
        (json.dumps({"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief"}}), "there can be one"),
        (json.dumps({"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker"}}), "more than once"),
        (json.dumps({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps"}}), "nothing would train"),
        (json.dumps({"cluster": {"gpu": ["a:1"]}, "task": {"type": "gpu"}}), "unknown task type"),
    ],
)
def test_a_malformed_tf_config_says_what_is_wrong(raw, message):
    with pytest.raises(ClusterConfigError, match=message):
        cluster.detect({"TF_CONFIG": raw})


def test_torchrun_variables_give_rank_world_and_rendezvous():
    info = cluster.detect(
        {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    )
    assert (info.source, info.rank, info.world_size, info.local_rank) == ("torchrun", 1, 2, 1)
    assert (info.master_addr, info.master_port, info.is_chief) == ("10.0.0.1", 29500, False)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RANK": "0"}, "WORLD_SIZE unset"),
        ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h"}, "outside 0..1"),
        ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK must be an integer"),
        ({"RANK": "1", "WORLD_SIZE": "2"}, "MASTER_ADDR is unset"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "at least 1"),
    ],
)
def test_inconsistent_torchrun_variables_are_rejected(environ, message):
    with pytest.raises(ClusterConfigError, match=message):
        cluster.detect(environ)


def test_no_cluster_environment_is_an_explicit_single_process():
    info = cluster.detect({})
    assert (info.source, info.rank, info.world_size, info.is_chief) == ("single", 0, 1, True)
    assert "single process" in info.describe()


def test_tf_config_takes_precedence_over_torchrun_variables():
    environ = {**tf_config(WORKERS, "worker", 2), "RANK": "0", "WORLD_SIZE": "1"}
    assert cluster.detect(environ).source == "tf_config"


def test_the_generated_tf_config_reads_back():
    text = cluster.tf_config_for(["127.0.0.1:1", "127.0.0.1:2"], 1)
    info = cluster.from_tf_config(text)
    assert (info.rank, info.world_size, info.cluster["worker"]) == (1, 2, ("127.0.0.1:1", "127.0.0.1:2"))
