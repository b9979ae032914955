"""``python -m workloads <command>`` as a child process: how the demo (and the tests) run ``serve-dev``
and the Kafka services exactly as a user would, on free ports, with their logs in a file."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from workloads.core.children import PACKAGE_ROOT, child_env
from workloads.core.errors import WorkloadError


@dataclasses.dataclass
class ChildCommand:
    """A running ``python -m workloads <command>`` and its log file."""

    command: str
    process: subprocess.Popen
    log_path: pathlib.Path

    @classmethod
    def start(
        cls, command: str, args: Sequence[str], log_path: pathlib.Path, env: dict[str, str] | None = None
    ) -> ChildCommand:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "workloads", command, "--log-format", "json", *args],
                cwd=PACKAGE_ROOT,
                env={**child_env(), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return cls(command, process, log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM, then wait: the graceful path. Returns the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise WorkloadError(
                f"{self.command} did not stop within {timeout_s:g} s of SIGTERM; killed it"
            ) from None

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.alive():
            self.process.kill()
        self.process.wait()

    def wait_for_ready_file(self, ready: pathlib.Path, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            if not self.alive():
                raise WorkloadError(
                    f"{self.command} exited with {self.process.returncode} before it was ready; "
                    f"its log ({self.log_path}) ends with:\n{self.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise WorkloadError(
                    f"{self.command} was not ready within {timeout_s:g} s; see {self.log_path}"
                )
            time.sleep(0.1)
        return json.loads(ready.read_text())


@dataclasses.dataclass
class LocalDevServer(ChildCommand):
    rest_port: int = 0
    grpc_port: int | None = None

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"


def start_dev_server(workdir: pathlib.Path, *args: str, timeout_s: float = 180) -> LocalDevServer:
    """``serve-dev`` on free ports (REST and gRPC); returns once it serves."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "serve-dev.ready.json"
    ready.unlink(missing_ok=True)
    child = ChildCommand.start(
        "serve-dev",
        ["--port", "0", "--grpc-port", "0", "--ready-file", str(ready), *args],
        workdir / "serve-dev.log",
    )
    ports = child.wait_for_ready_file(ready, timeout_s)
    return LocalDevServer(
        child.command, child.process, child.log_path, ports["rest_port"], ports["grpc_port"]
    )
