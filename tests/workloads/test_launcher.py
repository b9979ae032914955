"""The local job launcher: cluster environment per worker, group restarts on retryable failures only."""

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests.workloads.support import ROOT, json_lines, run_workloads, subprocess_env
from workloads.core.errors import WorkloadError
from workloads.training import launcher, local_job

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


# The launcher's life bounds its workers' (a real launcher process, sleeping workers)

LAUNCHER = textwrap.dedent(
    """
    import sys
    from workloads.core import logs
    from workloads.training import launcher, local_job
    logs.setup("json")
    worker = [sys.executable, "-c", "import time; time.sleep(120)"]
    with local_job.owning_checkpoint_dir(sys.argv[1]) as lock:
        launcher.LocalJob(worker, 2, pass_fds=lock, echo=False, grace_seconds=5).run()
    """
)


def start_launcher(checkpoints, *, ignore_sigint=False):
    """A launcher process of two sleeping workers on ``checkpoints``; returns it and its workers' pids.

    ``ignore_sigint``: started the way a shell starts a background job (``&``), SIGINT ignored.
    """
    command = [sys.executable, "-c", LAUNCHER, str(checkpoints)]
    # An ignored signal stays ignored across exec; a shell does this, not a preexec_fn (Python code between
    # fork and exec can deadlock in a process with threads, as this test process has).
    background = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"] if ignore_sigint else []
    process = subprocess.Popen(
        [*background, *command], cwd=ROOT, env=subprocess_env(), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        started = [r for r in json_lines(line) if r["msg"].startswith("started 2 workers")]
        if started:
            return process, started[0]["pids"]
        if not line and process.poll() is not None:
            break
    process.kill()
    pytest.fail(f"the launcher did not start its workers: {process.stderr.read()[-2000:]}")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that nobody reaped has ended)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pids, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_the_workers_of_a_killed_launcher_die_with_it(tmp_path):
    launcher_process, pids = start_launcher(tmp_path / "checkpoints")
    assert all(alive(pid) for pid in pids)
    launcher_process.kill()
    launcher_process.wait()
    assert gone_within(pids, 30), f"workers {[p for p in pids if alive(p)]} outlived their launcher"


@pytest.mark.parametrize(
    ("signum", "code"),
    [pytest.param(signal.SIGINT, 130, id="SIGINT"), pytest.param(signal.SIGTERM, 143, id="SIGTERM")],
)
def test_sigint_or_sigterm_to_the_launcher_stops_the_whole_job(tmp_path, signum, code):
    launcher_process, pids = start_launcher(tmp_path / "checkpoints", ignore_sigint=True)
    launcher_process.send_signal(signum)
    try:
        _, stderr = launcher_process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        launcher_process.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the launcher ignored {signum.name}")
    assert launcher_process.returncode == code, stderr[-2000:]
    assert not any(alive(pid) for pid in pids)
    assert f"stopped the job on {signum.name}" in stderr


def test_a_second_launcher_on_the_same_checkpoint_directory_stops_at_once_naming_the_holder(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    first, pids = start_launcher(checkpoints)
    try:
        began = time.monotonic()
        second = run_workloads(
            "train", "--local-workers", "2", "--data", str(tmp_path / "data"), "--output",
            str(tmp_path / "model"), "--checkpoint-dir", str(checkpoints), "--log-format", "json",
            timeout=120,
        )  # fmt: skip
        assert time.monotonic() - began < 60
    finally:
        first.kill()
        first.wait()
    errors = [r["msg"] for r in json_lines(second.stderr) if r.get("level") == "error"]
    assert second.returncode == 1, second.stderr[-2000:]
    lock = checkpoints / local_job.LOCK_FILE
    assert errors == [
        f"{checkpoints} is in use by another local job (launcher pid {first.pid} on "
        f"{socket.gethostname()} holds {lock}); stop that job or use another --checkpoint-dir"
    ]
    assert gone_within(pids, 30)
    with local_job.owning_checkpoint_dir(str(checkpoints)) as fds:  # free once the first job is gone
        assert fds
