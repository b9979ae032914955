"""The rules of the distributed runtime that need no second process: precision, agreement between
ranks, which failures are a lost peer, how torchrun agents and parameter-server clusters are set up."""

import json

import pytest

from tests.workloads.support import json_lines, run_workloads, subprocess_env
from workloads.core.settings import ConfigError
from workloads.training import launcher, torch_runtime
from workloads.training.config import TrainConfig


@pytest.mark.parametrize(
    ("requested", "device", "bf16", "expected"),
    [
        ("auto", "cpu", False, ("fp32", False)),
        ("auto", "cuda", True, ("bf16", False)),
        ("auto", "cuda", False, ("fp16", True)),
        ("fp32", "cuda", True, ("fp32", False)),
        ("bf16", "cpu", False, ("bf16", False)),
        ("fp16", "cpu", False, ("fp16", True)),
    ],
)
def test_auto_precision_is_bf16_on_capable_gpus_fp16_with_loss_scaling_on_older_ones_fp32_on_cpu(
    requested, device, bf16, expected
):
    precision = torch_runtime.choose_precision(requested, device, bf16)
    assert (precision.name, precision.loss_scaling) == expected


def test_rank_zero_names_every_disagreement_about_the_job():
    ours = {"world_size": 2, "settings": {"batch_size": 64, "model": "plain"}}
    theirs = {"world_size": 3, "settings": {"batch_size": 32, "model": "plain"}}
    assert torch_runtime._disagreements(1, theirs, ours) == [
        "rank 1 has WORLD_SIZE=3, rank 0 has 2",
        "rank 1 runs with --batch-size 32, rank 0 with 64",
    ]
    assert torch_runtime._disagreements(1, ours, ours) == []


def test_collective_failures_count_as_a_lost_peer_and_other_errors_do_not():
    import torch.distributed as dist

    gloo = RuntimeError(
        "[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1234"
    )
    assert torch_runtime.is_peer_failure(gloo)
    assert torch_runtime.is_peer_failure(dist.DistNetworkError("connect() timed out"))
    assert not torch_runtime.is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not torch_runtime.is_peer_failure(ValueError("Connection closed by peer"))
    error = torch_runtime.peer_lost(gloo, "training")
    assert error.exit_code == 138 and "lost contact with a peer worker while training" in str(error)


def torchrun_settings(argv: list[str], env: dict[str, str]):
    """What torchrun makes of the agent command ``argv`` in the environment ``env`` (its own parser,
    which takes every flag it is not given from ``PET_<FLAG>``)."""
    from unittest import mock

    from torch.distributed import run

    assert argv[1:3] == ["-m", launcher.AGENT_MODULE]
    with mock.patch.dict("os.environ", env, clear=True):
        return run.get_args_parser().parse_args(argv[3:])


def test_each_elastic_agent_joins_one_c10d_rendezvous_with_bounded_waits():
    agents = launcher.ElasticAgents(min_nodes=1, max_nodes=2, max_restarts=3, join_timeout=60, run_id="r")
    program = ["python", "-m", "workloads", "train", "--config", "c.json"]
    command = launcher.agent_command(program)
    first, second = (torchrun_settings(command, agents.environment(i, "127.0.0.1:5000")) for i in range(2))

    assert command[:3] == ["python", "-m", "torch.distributed.run"] and command[3:] == program[1:]
    assert (first.nnodes, first.nproc_per_node, first.max_restarts) == ("1:2", "1", 3)
    assert (first.rdzv_backend, first.rdzv_id) == ("c10d", "r")
    assert first.module and (first.training_script, first.training_script_args) == ("workloads", program[3:])
    assert first.rdzv_endpoint == second.rdzv_endpoint == "127.0.0.1:5000"
    conf = [dict(item.split("=") for item in args.rdzv_conf.split(",")) for args in (first, second)]
    assert [c["is_host"] for c in conf] == ["true", "false"]
    assert all(c["join_timeout"] == "60" and int(c["last_call_timeout"]) > 0 for c in conf)
    assert launcher.AGENT_ENVIRONMENT == {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    assert agents.environment(0, "e").items() >= launcher.AGENT_ENVIRONMENT.items()
    with pytest.raises(ValueError, match="python -m module"):
        launcher.agent_command(["python", "-c", "pass"])
    with pytest.raises(ValueError, match="min_nodes <= max_nodes"):
        launcher.ElasticAgents(min_nodes=3, max_nodes=2, max_restarts=0, join_timeout=1)
    with pytest.raises(ValueError, match="torchrun agents"):
        launcher.LocalJob(program, 2, elastic=agents)


def elastic_trial_job(**settings) -> dict:
    """The PyTorchJob the stack generates for an elastic DDP run of ``settings``."""
    from infra.config import Images, TrainingJob
    from infra.specs import training

    spec = TrainingJob(name="run-1", framework="pytorch", strategy="ddp", **settings)
    return training.training_job(spec, Images("r.example/ml", "1"))


def test_the_operators_pet_variables_start_the_pods_command_as_an_elastic_agent_of_the_jobs_settings():
    from tests.support.argo_rehearsal import local_agents, operator_environment

    job = elastic_trial_job(workers=3, min_workers=2, max_restarts=5)
    (replica,) = job["spec"]["pytorchReplicaSpecs"].values()
    container = replica["template"]["spec"]["containers"][0]
    pet = operator_environment(job, "run-1")
    pod_env = {**{e["name"]: e["value"] for e in container["env"]}, **pet}
    agent = torchrun_settings(container["command"] + container["args"], pod_env)
    assert (agent.nnodes, agent.nproc_per_node, agent.max_restarts) == ("2:3", "1", 5)
    assert (agent.rdzv_backend, agent.rdzv_endpoint, agent.rdzv_id) == (
        "c10d",
        "run-1-worker-0:23456",
        "run-1",
    )
    assert agent.module and agent.training_script == "workloads"
    assert agent.training_script_args == ["train", *container["args"]]
    # The local launcher's agents get the very same settings; only the rendezvous moves to the loopback.
    agents = local_agents(pet)
    assert (agents.min_nodes, agents.max_nodes, agents.max_restarts) == (2, 3, 5)
    local = agents.environment(0, "127.0.0.1:1234")
    assert {k: local[k] for k in pet if k != "PET_RDZV_ENDPOINT"} == {
        k: v for k, v in pet.items() if k != "PET_RDZV_ENDPOINT"
    }


def test_a_local_parameter_server_cluster_has_a_chief_then_workers_then_ps_tasks():
    environments = launcher.worker_environments(4, launcher.ParameterServerCluster(workers=2, ps=1))
    configs = [json.loads(env["TF_CONFIG"]) for env in environments]
    assert [c["task"] for c in configs] == [
        {"type": "chief", "index": 0},
        {"type": "worker", "index": 0},
        {"type": "worker", "index": 1},
        {"type": "ps", "index": 0},
    ]
    spec = configs[0]["cluster"]
    assert all(c["cluster"] == spec for c in configs)
    assert {k: len(v) for k, v in spec.items()} == {"chief": 1, "worker": 2, "ps": 1}
    assert len({a for v in spec.values() for a in v}) == 4


@pytest.mark.parametrize(
    ("settings", "flag", "message"),
    [
        ({"strategy": "ddp"}, "--strategy", "pass --framework pytorch"),
        ({"framework": "pytorch"}, "--strategy", "PyTorch trains with --strategy ddp"),
        (
            {"framework": "pytorch", "strategy": "ddp", "local_workers": 2, "min_workers": 3},
            "--min-workers",
            "more than --local-workers 2",
        ),
    ],
)
def test_framework_and_strategy_must_belong_together(settings, flag, message):
    with pytest.raises(ConfigError, match=message) as raised:
        TrainConfig(data="d", output="o", **settings)
    assert raised.value.field == flag


def test_a_parameter_server_batch_need_not_divide_among_the_workers():
    config = TrainConfig(data="d", output="o", strategy="parameter-server", batch_size=64, local_workers=3)
    assert config.batch_size == 64


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ("--framework", "pytorch", "--strategy", "ddp"),
            {"TF_CONFIG": json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}})},
            "TF_CONFIG is set, but PyTorch DDP",
        ),
        (
            ("--strategy", "parameter-server"),
            {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]},
                        "task": {"type": "chief", "index": 0},
                    }
                )
            },
            "TF_CONFIG.cluster has no ps task",
        ),
    ],
)
def test_a_cluster_environment_of_the_wrong_kind_fails_at_once(tmp_path, args, env, message):
    result = run_workloads(
        "train", "--data", str(tmp_path), "--output", str(tmp_path / "model"), "--metrics-port", "0", *args,
        env=subprocess_env(**env),
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [r["msg"] for r in json_lines(result.stderr) if r.get("level") == "error"]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({"CUDA_VISIBLE_DEVICES": "2,3"}, ["2", "3"]), ({"CUDA_VISIBLE_DEVICES": ""}, [])],
)
def test_visible_gpus_follow_cuda_visible_devices(environ, expected):
    assert launcher.visible_gpus(environ) == expected


def test_each_local_elastic_agent_gets_a_gpu_of_its_own_when_there_are_gpus():
    agents = launcher.ElasticAgents(min_nodes=2, max_nodes=2, max_restarts=1, join_timeout=10)
    program = launcher.agent_command(["python", "-m", "workloads", "train"])
    with_gpus = launcher.LocalJob(program, 2, elastic=agents, base_env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in with_gpus.launch_plan()] == ["0", "1"]
    without = launcher.LocalJob(program, 2, elastic=agents, base_env={"CUDA_VISIBLE_DEVICES": ""})
    plan = without.launch_plan()
    assert all("CUDA_VISIBLE_DEVICES" not in env for _, env in plan)
    assert all(env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1" for _, env in plan)
    assert len({env["PET_RDZV_ENDPOINT"] for _, env in plan}) == 1
    assert all(argv == program for argv, _ in plan)


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        (
            {"ingest": "Succeeded", "trial": "Failed", "select": "Succeeded", "verify": "Succeeded"},
            "Succeeded",
        ),
        ({"ingest": "Succeeded", "trial": "Failed", "select": "Failed", "verify": "Omitted"}, "Failed"),
        ({"ingest": "Error", "trial": "Omitted", "select": "Omitted", "verify": "Omitted"}, "Failed"),
    ],
)
def test_the_rehearsal_assesses_a_dag_by_its_leaves_branches_as_argo_does(phases, expected):
    """A failure a later task depends on (``trial.Failed``) does not fail the DAG once that task completes;
    an omitted leaf inherits the failure above it."""
    from tests.support.argo_rehearsal import Node, dag_phase

    tasks = [
        {"name": "ingest"},
        {"name": "trial", "depends": "ingest"},
        {"name": "select", "depends": "trial || trial.Failed"},
        {"name": "verify", "depends": "select"},
    ]
    results = {name: Node(name, name, phase) for name, phase in phases.items()}
    assert dag_phase(tasks, results) == expected
