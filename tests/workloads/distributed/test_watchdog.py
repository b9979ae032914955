"""Bounded waits: a worker whose peers never come gives up with the retryable exit code, and SIGTERM ends
a worker even while TensorFlow holds its main thread or has taken the signal's handler.

The watchdog's rules are checked on plain Python processes; the TensorFlow workers are started by hand
with the TF_CONFIG a TFJob would inject, one of its tasks never started.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.conftest import pick_free_port
from tests.workloads.support import ROOT, json_lines, subprocess_env
from workloads.training import cluster, launcher

WATCHED = textwrap.dedent(
    """
    import ctypes, json, signal, sys, time
    from workloads.core import logs
    from workloads.training import watchdog
    logs.setup("json")
    watchdog.GRACE_SECONDS = 0.5
    case = sys.argv[1]
    if case == "peers":
        with watchdog.startup_deadline(1, json.loads(sys.argv[2])):
            time.sleep(60)
    elif case == "gil":
        with watchdog.startup_deadline(1, {}):
            ctypes.PyDLL(None).sleep(60)  # C code that keeps the GIL, as TensorFlow's start-up does
    elif case == "stolen-handler":
        watchdog.exit_on_signals()
        ctypes.CDLL(None).signal(signal.SIGTERM, signal.SIG_IGN)  # a library takes SIGTERM
        print("ready", flush=True)
        time.sleep(60)
    """
)


def start(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=subprocess_env(), text=True, **popen)


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """(exit code, output) of ``process``, which must end within ``timeout`` seconds."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"still running after {timeout} s:\n{output[-3000:]}")
    return process.returncode, output


def errors(output: str) -> list[str]:
    return [r["msg"] for r in json_lines(output) if r.get("level") == "error"]


def test_a_start_up_past_its_deadline_ends_with_138_naming_the_peers_that_do_not_answer():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        peers = {
            "worker 1": f"127.0.0.1:{pick_free_port()}",
            "worker 2": f"127.0.0.1:{listening.getsockname()[1]}",
        }
        code, output = finish(
            start(
                "-c", WATCHED, "peers", json.dumps(peers), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            ),
            timeout=60,
        )
    assert code == 138, output[-2000:]
    assert errors(output) == [
        f"not every task joined within 1 s (--startup-timeout): no answer from worker 1 ({peers['worker 1']})"
    ]


def test_a_start_up_that_holds_the_gil_is_ended_by_the_kernel_timer():
    code, output = finish(start("-c", WATCHED, "gil", stdout=subprocess.PIPE, stderr=subprocess.STDOUT), 60)
    assert code == -signal.SIGALRM, output[-2000:]


def test_sigterm_ends_the_process_even_after_a_library_took_its_handler():
    process = start("-c", WATCHED, "stolen-handler", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout.readline().strip() == "ready"
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        process.send_signal(signal.SIGTERM)  # again until the signal thread has taken the handler back
        time.sleep(0.5)
    if process.poll() is None:
        process.kill()
        pytest.fail("SIGTERM was ignored for 30 s")
    assert process.wait() == 143
    assert any('"msg": "received SIGTERM; exiting"' in line for line in output)


def tf_task(dataset, output, tf_config: str, *flags: str) -> subprocess.Popen:
    argv = [
        "-m", "workloads", "train", "--data", str(dataset), "--output", str(output), "--batch-size", "32",
        "--metrics-port", "0", "--threads", "1", "--log-format", "json", *flags,
    ]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env=subprocess_env(TF_CONFIG=tf_config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "tasks", "task", "missing"),
    [
        pytest.param("multi-worker-mirrored", {"worker": 2}, ("worker", 0), "worker 1", id="mwms-leader"),
        pytest.param(
            "parameter-server", {"chief": 1, "worker": 1, "ps": 1}, ("chief", 0), "ps 0", id="ps-chief"
        ),
    ],
)
def test_a_task_whose_peer_never_starts_exits_138_soon_after_the_startup_timeout(
    small_dataset, tmp_path, strategy, tasks, task, missing
):
    ports = iter(launcher.free_ports(sum(tasks.values())))
    addresses = {job: [f"127.0.0.1:{next(ports)}" for _ in range(count)] for job, count in tasks.items()}
    tf_config = cluster.tf_config(addresses, *task)
    began = time.monotonic()
    code, output = finish(
        tf_task(
            small_dataset, tmp_path / "model", tf_config, "--strategy", strategy, "--startup-timeout", "5"
        ),
        timeout=180,
    )
    assert code == 138, output[-3000:]
    assert time.monotonic() - began < 150
    (error,) = errors(output)
    assert error.startswith("not every task joined within 5 s (--startup-timeout): ") and missing in error


@pytest.mark.slow
def test_a_training_tensorflow_worker_honours_sigterm(small_dataset, tmp_path):
    """TensorFlow's coordination service installs a SIGTERM handler that only records a preemption
    notice; the worker takes the signal back and exits 143."""
    tf_config = cluster.tf_config_for([f"127.0.0.1:{pick_free_port()}"], 0)
    process = tf_task(small_dataset, tmp_path / "model", tf_config, "--epochs", "100", "--log-every", "5")
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    deadline = time.monotonic() + 180
    while not any('"msg": "step ' in line for line in lines):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("training never started:\n" + "".join(lines[-30:]))
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("SIGTERM was ignored for 60 s")
    assert code == 143, "".join(lines[-30:])
