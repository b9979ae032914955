"""Real processes for the serving tests: the development server, and waiting on things."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

ROOT = pathlib.Path(__file__).resolve().parents[3]
T = TypeVar("T")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that must import this checkout's ``workloads``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Polls ``check`` until it returns something truthy; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclasses.dataclass
class ServiceProcess:
    """A ``python -m workloads <command>`` child with its log file."""

    process: subprocess.Popen
    log_path: pathlib.Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.log_path.name}: did not stop within {timeout} s of SIGTERM"
            ) from None

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.alive():
            self.process.kill()
        self.process.wait()


def start_service(command: str, args: Sequence[str], log_path: pathlib.Path) -> ServiceProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workloads", command, "--log-format", "json", *args],
            cwd=ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(process, log_path)


@dataclasses.dataclass
class DevServer(ServiceProcess):
    rest_port: int = 0
    grpc_port: int = 0

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"


def start_dev_server(workdir: pathlib.Path, *args: str, timeout: float = 180) -> DevServer:
    """``serve-dev`` on free ports; returns once it answers (it writes its ports to a ready file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready.json"
    ready.unlink(missing_ok=True)
    service = start_service(
        "serve-dev",
        ["--port", "0", "--grpc-port", "0", "--ready-file", str(ready), *args],
        workdir / "serve-dev.log",
    )

    def started() -> dict | None:
        if not service.alive():
            raise AssertionError(
                f"serve-dev exited with {service.process.returncode}:\n{service.log()[-4000:]}"
            )
        return json.loads(ready.read_text()) if ready.exists() else None

    ports = wait_until(started, timeout, "serve-dev to write its ready file")
    return DevServer(service.process, service.log_path, ports["rest_port"], ports["grpc_port"])
