"""A local stand-in for a TFJob (or PyTorchJob): N worker processes on 127.0.0.1, restarted as a group.

Each worker gets the environment the Kubeflow operator would inject (``TF_CONFIG`` with every
worker's ``127.0.0.1:<free port>``, or torchrun's ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/
``MASTER_PORT``). Their output is streamed to this process's stderr (JSON log lines as they are,
anything else prefixed with the worker) and, with ``log_dir``, to ``worker-<i>.log``.

Failure handling follows a TFJob with ``restartPolicy: OnFailure`` restricted the way Kubeflow's
``ExitCode`` policy is: when a worker dies from a signal or exits with 128-255 (retryable, e.g. 138
for a lost peer), the others are stopped and the whole group restarts on fresh ports, up to
``max_restarts`` times; workers resume from their checkpoints. An exit code of 1-127 is a permanent
error (bad input, bad config) that a restart cannot fix, so the job stops at once. The whole job has
an outer ``timeout``, so nothing waits forever on a hung collective.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Literal

import workloads
from workloads import cluster, logs
from workloads.errors import WorkloadError, is_retryable_exit

log = logging.getLogger(__name__)

PACKAGE_ROOT = pathlib.Path(workloads.__file__).resolve().parent.parent
# Set per worker by the launcher; never inherited from the launching process.
CLUSTER_VARIABLES = (
    "TF_CONFIG",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


@dataclasses.dataclass(frozen=True)
class LaunchResult:
    attempts: int
    wall_seconds: float


def free_ports(count: int) -> list[int]:
    """Ports that were free on 127.0.0.1 a moment ago (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def worker_environments(count: int, style: Literal["tf_config", "torchrun"]) -> list[dict[str, str]]:
    """What the training operator would inject into each of ``count`` workers."""
    if style == "tf_config":
        addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
        return [{"TF_CONFIG": cluster.tf_config_for(addresses, index)} for index in range(count)]
    (port,) = free_ports(1)
    return [
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(count),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(count),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        for rank in range(count)
    ]


class LocalJob:
    """Runs ``argv`` as ``num_workers`` cooperating processes until all succeed (see module docstring)."""

    def __init__(
        self,
        argv: Sequence[str],
        num_workers: int,
        *,
        env_style: Literal["tf_config", "torchrun"] = "tf_config",
        max_restarts: int = 3,
        timeout: float = 3600.0,
        log_dir: pathlib.Path | None = None,
        env: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
        echo: bool = True,
        grace_seconds: float = 10.0,
        on_start: Callable[[LocalJob], None] | None = None,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        self.argv = list(argv)
        self.num_workers = num_workers
        self.env_style = env_style
        self.max_restarts = max_restarts
        self.timeout = timeout
        self.log_dir = log_dir
        self.env = dict(env or {})
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.echo = echo
        self.grace_seconds = grace_seconds
        self.on_start = on_start
        self.attempt = 0
        self.workers: list[subprocess.Popen] = []
        self._pumps: list[threading.Thread] = []
        self._echo_lock = threading.Lock()

    def run(self) -> LaunchResult:
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            while True:
                self.attempt += 1
                self._start()
                failure = self._wait(deadline)
                if failure is None:
                    log.info(
                        "all workers finished",
                        extra=logs.fields(workers=self.num_workers, attempts=self.attempt),
                    )
                    return LaunchResult(self.attempt, time.monotonic() - started)
                index, code = failure
                self._stop()
                if not is_retryable_exit(code):
                    raise WorkloadError(
                        f"worker {index} exited with code {code}, a permanent error (1-127: bad input or "
                        "config, see its log above); not restarting"
                    )
                if self.attempt > self.max_restarts:
                    raise WorkloadError(
                        f"worker {index} failed ({_describe(code)}) and the {self.max_restarts} restart(s) "
                        "are used up; see the worker logs above"
                    )
                log.warning(
                    "worker %d failed (%s); restarting the group (restart %d of %d)",
                    index,
                    _describe(code),
                    self.attempt,
                    self.max_restarts,
                    extra=logs.fields(worker=index, exit_code=code, attempt=self.attempt),
                )
        finally:
            self._stop()

    def _start(self) -> None:
        environments = worker_environments(self.num_workers, self.env_style)
        python_path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self.workers, self._pumps = [], []
        for index, extra in enumerate(environments):
            inherited = {k: v for k, v in self.base_env.items() if k not in CLUSTER_VARIABLES}
            env = {
                **inherited,
                "TF_CPP_MIN_LOG_LEVEL": inherited.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                "PYTHONUNBUFFERED": "1",
                **self.env,
                **extra,
                "PYTHONPATH": python_path,
            }
            process = subprocess.Popen(
                self.argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the launcher, which stops the group
            )
            self.workers.append(process)
            sink = self._log_file(index)
            pump = threading.Thread(target=self._pump, args=(index, process.stdout, sink), daemon=True)
            pump.start()
            self._pumps.append(pump)
        log.info(
            "started %d workers (attempt %d)",
            self.num_workers,
            self.attempt,
            extra=logs.fields(pids=[p.pid for p in self.workers], attempt=self.attempt),
        )
        if self.on_start:
            self.on_start(self)

    def _log_file(self, index: int) -> IO[str] | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        sink = (self.log_dir / f"worker-{index}.log").open("a", encoding="utf-8")
        sink.write(f"=== attempt {self.attempt} ===\n")
        sink.flush()
        return sink

    def _pump(self, index: int, stream: IO[bytes], sink: IO[str] | None) -> None:
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if sink:
                    sink.write(line + "\n")
                    sink.flush()
                if self.echo:
                    shown = line if line.startswith("{") else f"[worker {index}] {line}"
                    with self._echo_lock:
                        print(shown, file=sys.stderr, flush=True)
        finally:
            if sink:
                sink.close()

    def _wait(self, deadline: float) -> tuple[int, int] | None:
        """None when every worker exited 0; (index, code) of the first failure otherwise."""
        while True:
            codes = [p.poll() for p in self.workers]
            for index, code in enumerate(codes):
                if code not in (None, 0):
                    return index, code
            if all(code == 0 for code in codes):
                for pump in self._pumps:
                    pump.join(timeout=5)
                return None
            if time.monotonic() > deadline:
                self._stop()
                raise WorkloadError(
                    f"the job did not finish within {self.timeout:.0f} s (--timeout); stopped all workers"
                )
            time.sleep(0.1)

    def _stop(self) -> None:
        alive = [p for p in self.workers if p.poll() is None]
        for process in alive:
            _signal(process, signal.SIGTERM)
        end = time.monotonic() + self.grace_seconds
        for process in alive:
            try:
                process.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
                process.wait()
        for pump in self._pumps:
            pump.join(timeout=5)


def _signal(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
