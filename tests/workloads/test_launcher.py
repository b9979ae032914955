"""The local job launcher: cluster environment per worker, group restarts on retryable failures only."""

import json
import sys
import textwrap

import pytest

from workloads.core.errors import WorkloadError
from workloads.training import launcher

WORKER = textwrap.dedent(
    """
    import json, os, pathlib, sys
    marks = pathlib.Path(sys.argv[1])
    cluster = json.loads(os.environ["TF_CONFIG"]) if "TF_CONFIG" in os.environ else None
    index = cluster["task"]["index"] if cluster else int(os.environ["RANK"])
    attempt = len(list(marks.glob(f"worker{index}-*")))
    (marks / f"worker{index}-{attempt}").write_text(json.dumps({"env": dict(os.environ)}))
    behaviour = sys.argv[2]
    print(f"hello from {index}", flush=True)
    if behaviour == "crash-once" and index == 1 and attempt == 0:
        os.kill(os.getpid(), 9)
    if behaviour == "exit-3" and index == 1:
        sys.exit(3)
    if behaviour == "peer-lost" and index == 0:
        sys.exit(138)
    if behaviour == "hang":
        import time; time.sleep(60)
    """
)


def run_job(tmp_path, behaviour, workers=2, **kwargs):
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    job = launcher.LocalJob(
        [sys.executable, "-c", WORKER, str(marks), behaviour],
        workers,
        log_dir=tmp_path / "logs",
        echo=False,
        grace_seconds=2,
        **kwargs,
    )
    return job, marks


def test_each_worker_gets_the_tf_config_a_tfjob_would_inject(tmp_path):
    job, marks = run_job(tmp_path, "ok", workers=3)
    assert job.run().attempts == 1
    configs = [
        json.loads(json.loads((marks / f"worker{i}-0").read_text())["env"]["TF_CONFIG"]) for i in range(3)
    ]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)


def test_torchrun_style_sets_rank_world_size_and_master(tmp_path):
    job, marks = run_job(tmp_path, "ok", env_style="torchrun")
    job.run()
    envs = [json.loads((marks / f"worker{i}-0").read_text())["env"] for i in range(2)]
    assert [(e["RANK"], e["WORLD_SIZE"], e["MASTER_ADDR"]) for e in envs] == [
        ("0", "2", "127.0.0.1"),
        ("1", "2", "127.0.0.1"),
    ]
    assert envs[0]["MASTER_PORT"] == envs[1]["MASTER_PORT"]


def test_a_killed_worker_restarts_the_whole_group_on_fresh_ports(tmp_path):
    job, marks = run_job(tmp_path, "crash-once", max_restarts=2)
    assert job.run().attempts == 2
    assert sorted(p.name for p in marks.iterdir()) == ["worker0-0", "worker0-1", "worker1-0", "worker1-1"]
    first = json.loads((marks / "worker0-0").read_text())["env"]["TF_CONFIG"]
    second = json.loads((marks / "worker0-1").read_text())["env"]["TF_CONFIG"]
    assert first != second
    log = (tmp_path / "logs" / "worker-1.log").read_text()
    assert "=== attempt 1 ===" in log and "=== attempt 2 ===" in log and "hello from 1" in log


def test_a_permanent_exit_code_stops_the_job_without_restarts(tmp_path):
    job, _ = run_job(tmp_path, "exit-3", max_restarts=3)
    with pytest.raises(WorkloadError, match="worker 1 exited with code 3, a permanent error"):
        job.run()
    assert job.attempt == 1


def test_restarts_are_bounded(tmp_path):
    job, _ = run_job(tmp_path, "peer-lost", max_restarts=1)
    with pytest.raises(WorkloadError, match="restart\\(s\\) are used up"):
        job.run()
    assert job.attempt == 2


def test_the_outer_timeout_stops_a_hung_job(tmp_path):
    job, _ = run_job(tmp_path, "hang", timeout=3)
    with pytest.raises(WorkloadError, match="did not finish within 3 s"):
        job.run()
    assert all(p.poll() is not None for p in job.workers)


def test_workers_never_inherit_the_launchers_cluster_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["elsewhere:1"]}, "task": {"type": "worker"}}')
    monkeypatch.setenv("RANK", "7")
    job, marks = run_job(tmp_path, "ok", env_style="torchrun")
    job.run()
    env = json.loads((marks / "worker1-0").read_text())["env"]
    assert "TF_CONFIG" not in env and env["RANK"] == "1"
