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

The workers are tied to the launcher: each gets SIGKILL from the kernel when the launcher ends, however
it ends (Linux's parent-death signal, :func:`children.tied_to_this_process`), so no orphan trains on
and races a re-run. Each worker runs in a session of its own, so a terminal's Ctrl-C reaches only the
launcher; SIGINT or SIGTERM to the launcher stops the group (SIGTERM, SIGKILL after ``grace_seconds``;
a second signal kills at once) and the launcher exits 130 or 143 (:class:`Interrupted`).

With ``elastic`` (:class:`ElasticAgents`, an elastic PyTorchJob), each of the processes is a torchrun
elastic agent (one "node" running one worker) joining a c10d rendezvous hosted by agent 0 on a free
loopback port. ``argv`` is then the agent's command (:func:`agent_command`), the very command of an
elastic PyTorchJob's pods (``infra.specs.training``), and every agent gets its settings as the
training operator gives them there: ``PET_*`` variables (:meth:`ElasticAgents.environment`). The
agents restart their workers themselves when one fails or a node joins or leaves (``max_restarts``
each, every rendezvous wait bounded by ``join_timeout``); this launcher only watches the agents:
losing one is tolerated while at least ``min_nodes`` remain (the job goes on smaller), and below that
the whole group restarts as above.

torchrun normally keeps one store for the workers across restarts, without clearing it; after a
restart gloo can then read a dead peer's address from the previous round and fail to connect, or
hang until its timeout (seen here: "Gloo connectFullMesh failed ... Connection refused", and
restarts that took minutes). The agents therefore run with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``,
which gives every round a fresh store hosted by the new rank 0.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Literal

from workloads.core import children, logs
from workloads.core.errors import WorkloadError, is_retryable_exit
from workloads.training import cluster

log = logging.getLogger(__name__)

# Set per worker by the launcher; never inherited from the launching process (nor any PET_* variable).
CLUSTER_VARIABLES = (
    "TF_CONFIG",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(SystemExit):
    """SIGINT or SIGTERM reached the launcher, which stopped its workers; the process exits with
    128 + the signal's number (130, 143). Not a :class:`WorkloadError`: nothing goes on to the next job."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


AGENT_MODULE = "torch.distributed.run"  # torchrun
RDZV_BACKEND = "c10d"  # the rendezvous the first agent hosts; no etcd to run
PET_PREFIX = "PET_"  # torchrun reads a flag it is not given from PET_<FLAG> (the operator sets them)
AGENT_ENVIRONMENT = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # a fresh store per round (docstring)


def agent_command(program: Sequence[str]) -> list[str]:
    """``program`` (``python -m module ...``) run by a torchrun elastic agent that takes every setting from
    the ``PET_*`` environment: the command of an elastic PyTorchJob's pods and of the local agents."""
    if len(program) < 3 or program[1] != "-m":
        raise ValueError(f"an elastic worker must be `python -m module ...`, got {list(program)}")
    return [program[0], "-m", AGENT_MODULE, *program[1:]]


def is_agent_command(argv: Sequence[str]) -> bool:
    return list(argv[1:3]) == ["-m", AGENT_MODULE]


@dataclasses.dataclass(frozen=True)
class ElasticAgents:
    """How each process of an elastic job runs: a torchrun agent with one worker (one "node")."""

    min_nodes: int
    max_nodes: int
    max_restarts: int  # worker-group restarts per agent
    join_timeout: float  # seconds a rendezvous may take before the agent gives up
    last_call_timeout: float = 2.0  # extra wait for more nodes once min_nodes have joined
    close_timeout: float = 10.0
    read_timeout: float = 60.0  # store operations
    monitor_interval: float = 0.5
    run_id: str = "mlstack"

    def __post_init__(self) -> None:
        if not 1 <= self.min_nodes <= self.max_nodes:
            raise ValueError(f"need 1 <= min_nodes <= max_nodes, got {self.min_nodes}:{self.max_nodes}")

    def environment(self, index: int, endpoint: str) -> dict[str, str]:
        """What agent ``index`` reads: the variables the training operator injects into an elastic
        PyTorchJob's pods (``PET_NNODES`` MIN:MAX, the rendezvous, ``PET_MAX_RESTARTS``), with a
        loopback's own rendezvous settings: agent 0 hosts it (every agent here has the same hostname,
        which in a pod decides it) and every wait is bounded."""
        conf = {
            "is_host": "true" if index == 0 else "false",
            "join_timeout": _seconds(self.join_timeout),
            "last_call_timeout": _seconds(self.last_call_timeout),
            "close_timeout": _seconds(self.close_timeout),
            "read_timeout": _seconds(self.read_timeout),
        }
        flags = {
            "nnodes": f"{self.min_nodes}:{self.max_nodes}",
            "nproc_per_node": "1",
            "rdzv_backend": RDZV_BACKEND,
            "rdzv_endpoint": endpoint,
            "rdzv_id": self.run_id,
            "rdzv_conf": ",".join(f"{k}={v}" for k, v in conf.items()),
            "max_restarts": str(self.max_restarts),
            "monitor_interval": str(self.monitor_interval),
        }
        return {**{PET_PREFIX + k.upper(): v for k, v in flags.items()}, **AGENT_ENVIRONMENT}


def visible_gpus(environ: Mapping[str, str]) -> list[str]:
    """The NVIDIA GPUs a process started with ``environ`` would see (without loading a framework)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [device.strip() for device in environ["CUDA_VISIBLE_DEVICES"].split(",") if device.strip()]
    devices = (p.name.removeprefix("nvidia") for p in pathlib.Path("/dev").glob("nvidia[0-9]*"))
    return sorted((d for d in devices if d.isdigit()), key=int)


def _seconds(value: float) -> str:
    return str(max(1, round(value)))


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


@dataclasses.dataclass(frozen=True)
class ParameterServerCluster:
    """A TFJob with ps replicas: process 0 is the chief, then the workers, then the ps tasks.

    Workers and parameter servers serve until they are stopped; the job is done when the chief is.
    """

    workers: int
    ps: int

    @property
    def size(self) -> int:
        return 1 + self.workers + self.ps

    def environments(self) -> list[dict[str, str]]:
        addresses = [f"127.0.0.1:{port}" for port in free_ports(self.size)]
        tasks = {
            "chief": addresses[:1],
            "worker": addresses[1 : 1 + self.workers],
            "ps": addresses[1 + self.workers :],
        }
        order = (
            [("chief", 0)]
            + [("worker", i) for i in range(self.workers)]
            + [("ps", i) for i in range(self.ps)]
        )
        return [{"TF_CONFIG": cluster.tf_config(tasks, task, index)} for task, index in order]


def parameter_server_style(workers: int, ps: int) -> ParameterServerCluster:
    return ParameterServerCluster(workers, ps)


EnvStyle = Literal["tf_config", "torchrun"] | ParameterServerCluster


def worker_environments(count: int, style: EnvStyle) -> list[dict[str, str]]:
    """What the training operator would inject into each of ``count`` workers."""
    if isinstance(style, ParameterServerCluster):
        if count != style.size:
            raise ValueError(
                f"a parameter-server cluster of {style.size} tasks cannot run as {count} processes"
            )
        return style.environments()
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
        env_style: EnvStyle = "tf_config",
        max_restarts: int = 3,
        timeout: float = 3600.0,
        log_dir: pathlib.Path | None = None,
        env: Mapping[str, str] | None = None,
        base_env: Mapping[str, str] | None = None,
        echo: bool = True,
        grace_seconds: float = 10.0,
        on_start: Callable[[LocalJob], None] | None = None,
        elastic: ElasticAgents | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        if elastic and elastic.max_nodes != num_workers:
            raise ValueError(f"{num_workers} agents cannot make an elastic job of up to {elastic.max_nodes}")
        if elastic and not is_agent_command(argv):
            raise ValueError(f"an elastic job runs torchrun agents (agent_command), not {list(argv)}")
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
        self.elastic = elastic
        self.pass_fds = tuple(pass_fds)  # open in every worker (a lock held as long as any of them lives)
        self.signalled: int | None = None  # the SIGINT or SIGTERM that stops the job
        self.attempt = 0
        self.lost: set[int] = set()  # elastic: agents gone for good while the job went on without them
        self.workers: list[subprocess.Popen] = []
        self._pumps: list[threading.Thread] = []
        self._echo_lock = threading.Lock()

    def run(self) -> LaunchResult:
        with self._signals_stop_the_job():
            return self._run()

    def _run(self) -> LaunchResult:
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            while True:
                self._raise_if_signalled()
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

    @contextlib.contextmanager
    def _signals_stop_the_job(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the workers and end :meth:`run` with :class:`Interrupted`, whatever
        the job did meanwhile (main thread only: elsewhere the signals keep their usual effect)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                if handler is not None:  # None: set outside Python, cannot be put back
                    signal.signal(signum, handler)
            if self.signalled is not None:
                log.warning(
                    "stopped the job on %s",
                    signal.Signals(self.signalled).name,
                    extra=logs.fields(signal=signal.Signals(self.signalled).name, attempt=self.attempt),
                )
                raise Interrupted(self.signalled)  # the signal decides how the job ends, whatever it did

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.signalled is not None:  # a second signal: no more grace
            for process in self.workers:
                _signal(process, signal.SIGKILL)
        self.signalled = signum

    def _raise_if_signalled(self) -> None:
        if self.signalled is not None:
            raise Interrupted(self.signalled)

    def launch_plan(self) -> list[tuple[list[str], dict[str, str]]]:
        """(argv, extra environment) of every process of this attempt, on fresh ports."""
        if self.elastic is None:
            return [(self.argv, env) for env in worker_environments(self.num_workers, self.env_style)]
        endpoint = f"127.0.0.1:{free_ports(1)[0]}"
        gpus = visible_gpus(self.base_env)
        if gpus and len(gpus) < self.num_workers:
            log.warning(
                "%d workers share %d GPU(s): NCCL needs a GPU of its own for every rank",
                self.num_workers,
                len(gpus),
            )
        plan = []
        for index in range(self.num_workers):
            extra = self.elastic.environment(index, endpoint)
            if gpus:  # every agent is a "node" of its own here: give each its own GPU, as its pod would have
                extra["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
            plan.append((self.argv, extra))
        return plan

    def _start(self) -> None:
        plan = self.launch_plan()
        self.lost = set()
        self.workers, self._pumps = [], []
        for index, (argv, extra) in enumerate(plan):
            inherited = {
                k: v
                for k, v in self.base_env.items()
                if k not in CLUSTER_VARIABLES and not k.startswith(PET_PREFIX)
            }
            env = {
                **children.child_env(inherited),
                "PYTHONUNBUFFERED": "1",
                **self.env,
                **extra,
                "PYTHONPATH": children.python_path(),
            }
            process = subprocess.Popen(
                children.tied_to_this_process(argv),  # the worker dies with the launcher
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the launcher, which stops the group
                pass_fds=self.pass_fds,
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
            self._raise_if_signalled()
            codes = [p.poll() for p in self.workers]
            for index, code in enumerate(codes):
                if (
                    code not in (None, 0)
                    and index not in self.lost
                    and not self._tolerate(index, code, codes)
                ):
                    return index, code
            if isinstance(self.env_style, ParameterServerCluster) and codes[0] == 0:
                return None  # the chief is done; the ps and worker tasks are stopped, not awaited
            if all(code == 0 for index, code in enumerate(codes) if index not in self.lost):
                for pump in self._pumps:
                    pump.join(timeout=5)
                return None
            if time.monotonic() > deadline:
                self._stop()
                raise WorkloadError(
                    f"the job did not finish within {self.timeout:.0f} s (--timeout); stopped all workers"
                )
            time.sleep(0.1)

    def _tolerate(self, index: int, code: int, codes: list[int | None]) -> bool:
        """Elastic jobs go on without a lost agent while at least ``min_nodes`` agents remain."""
        if self.elastic is None or not is_retryable_exit(code):
            return False
        remaining = sum(1 for i, c in enumerate(codes) if c in (None, 0) and i not in self.lost)
        if remaining < self.elastic.min_nodes:
            return False
        self.lost.add(index)
        _signal(self.workers[index], signal.SIGKILL)  # its worker, orphaned by the agent's death
        log.warning(
            "agent %d lost (%s); the elastic job continues with %d node(s)",
            index,
            _describe(code),
            remaining,
            extra=logs.fields(worker=index, exit_code=code, remaining=remaining),
        )
        return True

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
