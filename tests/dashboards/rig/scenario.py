"""The live scenario: real mlstack workloads under a real Prometheus, for the integration test and the snapshots.

node_exporter and Prometheus (Debian packages) run on loopback; Prometheus scrapes every second and
evaluates the generated rules (:mod:`tests.dashboards.rig.loopback`). The workloads run as a user runs them
(:mod:`tests.dashboards.rig.local_workloads`), in two phases and a fault:

1. **Training**: ``train --local-workers 2`` on synthetic shards, two TensorFlow
   MultiWorkerMirroredStrategy worker processes that checkpoint every few steps, launched while
   Prometheus starts. Each worker's metrics port (a free one, read from its log) joins the
   ``mlstack-training`` scrape job as soon as it is known. Once Prometheus has seen both workers step
   and the chief checkpoint, the **training** observation is taken; the run then finishes.
2. **Serving**: the trained model is exported while ``serve-dev`` (job ``tf-serving``) starts on the
   empty model base path and loads it once the exporter promotes it, as TF Serving would. Meanwhile a
   real HDFS (a NameNode and a DataNode) starts with the hdfs role's JMX exporter agent in the NameNode
   (job ``hdfs-jmx``), and a real Kafka node with the kafka role's (job ``kafka-jmx``), then
   ``infer-worker`` (requests -> serve-dev -> results, poison -> dead-letter topic) and ``stream-ingest``
   (records -> shards on HDFS under ``/mlstack/datasets/``, and rejects). A ``loadtest`` of valid
   requests runs while requests and records are produced (and one malformed request is sent); once the
   services have consumed everything, the **serving healthy** observation. Then a burst of malformed
   requests (far over ServingErrorRateHigh's ratio) and the **serving errors** observation.
3. **DataNode lost**, after the serving phase: ``stream-ingest`` stops and the only DataNode is SIGKILLed;
   once the NameNode has declared it dead and Prometheus sees the blocks it held missing, the
   **DataNode lost** observation.

An :class:`Observation` is Prometheus's rule groups (so the alerts' states) at that moment and the
results of the caller's probe queries. :attr:`Stack.exported_here` collects the names each source
serves, read from its own ``/metrics`` page while it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from dashboards import catalog
from dashboards.generate import PROMETHEUS_DIR, ROOT
from dashboards.params import DEPLOYMENT
from tests.dashboards.rig import live, local_workloads, loopback
from workloads.serving.dev.process import ChildCommand, LocalDevServer
from workloads.serving.tfs_config import METRICS_PATH, MODEL_NAME
from workloads.streaming.kafka import DLQ_TOPIC, INGEST_TOPIC, REQUESTS_TOPIC, RESULTS_TOPIC

RULE_FILES = sorted((ROOT / PROMETHEUS_DIR).glob("*.rules.yaml"))
TRAINING_JOB = "mlstack-training"
SERVING_JOB = "tf-serving"
INFER_JOB = "mlstack-infer-worker"
INGEST_JOB = "mlstack-stream-ingest"
KAFKA_JMX_JOB = "kafka-jmx"
HDFS_JMX_JOB = "hdfs-jmx"
TRAINING_WORKERS = 2
KAFKA_TOPICS = (REQUESTS_TOPIC, RESULTS_TOPIC, DLQ_TOPIC, INGEST_TOPIC)
# The scenario's phases (Scenario.phases), and its observations in the order they are taken.
TRAINING = "training"
SERVING = "serving"
SERVING_HEALTHY = "serving healthy"
SERVING_ERRORS = "serving errors"
DATANODE_LOST = "DataNode lost"
# The metric names of docs/interfaces.md each workload source must serve, by prefix.
DOCUMENTED_PREFIXES = {
    "training worker": "mlstack_train_",
    "serve-dev": ":tensorflow:serving:",
    "infer-worker": "mlstack_infer_",
    "stream-ingest": "mlstack_ingest_",
}
# The source names of the Kafka node's and the NameNode's JMX exporters in Stack.exported_here.
KAFKA_JMX_SOURCE = "Kafka JMX exporter"
HDFS_JMX_SOURCE = "HDFS JMX exporter"
# Where stream-ingest writes its shards, on the scenario's HDFS (docs/interfaces.md, "HDFS paths").
INGEST_PATH = "/mlstack/datasets/live-stream/shards"


class ScenarioError(RuntimeError):
    """The scenario could not reach a state it waits for; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much of each workload runs; the defaults keep the integration test short."""

    run_name: str = "live-training"
    """The training run's ``run`` label."""
    train_records: int = 1024
    """Synthetic training records."""
    epochs: int = 8
    """Training epochs: enough steps for Prometheus to see both workers step and checkpoint mid-run."""
    batch_size: int = 32
    """Global batch size (16 per worker)."""
    checkpoint_every: int = 16
    """Steps between checkpoints."""
    load_seconds: float = 4
    """Duration of the load test; Kafka requests and records are produced during it."""
    kafka_rounds: int = 4
    """Rounds of Kafka messages produced during the load test, evenly spread."""
    messages_per_round: int = 50
    """Valid inference requests, and valid ingest records, per round."""


@dataclasses.dataclass(frozen=True)
class Stack:
    """A running Prometheus, when it started scraping, and the names each source running here serves."""

    prometheus: loopback.Prometheus
    started: float
    exported_here: dict[str, set[str]]


@dataclasses.dataclass(frozen=True)
class Observation:
    """Prometheus at one moment: its rule groups (with the alerts' states) and the probe queries' results."""

    at: float
    groups: list[dict[str, Any]]
    values: dict[str, list[dict[str, Any]]]

    def alerts(self, name: str) -> list[tuple[dict[str, str], str]]:
        """``[(labels, state)]`` of the active (pending or firing) alerts of the alert rule ``name``."""
        states = live.alert_states(self.groups)
        if name not in states:
            raise KeyError(f"no alert rule {name} is loaded")
        return [(alert["labels"], alert["state"]) for alert in states[name]]


@dataclasses.dataclass
class Scenario:
    """What the scenario ran and saw; filled in as it goes."""

    stack: Stack
    settings: Settings
    observations: dict[str, Observation] = dataclasses.field(default_factory=dict)
    phases: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    """``{TRAINING or SERVING: (start, end)}`` in unix seconds."""
    training_steps_observed: float = 0
    """The furthest worker's step count Prometheus had at the training observation."""
    training_summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The finished run's training.json."""
    loadtest: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The load test's report."""
    malformed_codes: list[int] = dataclasses.field(default_factory=list)
    """HTTP codes serve-dev answered to every malformed request sent."""
    served_version: str = ""
    """The model version serve-dev loaded once the export promoted it."""
    inference_requests: int = 0
    """Valid inference requests produced to Kafka."""
    ingest_records: int = 0
    """Valid image records produced to Kafka."""
    ended: float = 0.0
    """When the scenario finished (unix seconds)."""


@contextlib.contextmanager
def stack(
    workdir: pathlib.Path,
    dead_nodes: Sequence[str] = (),
    jobs: Sequence[loopback.ScrapeJob] = (),
) -> Iterator[Stack]:
    """node_exporter and Prometheus (with the generated rules) on loopback.

    ``jobs`` are more scrape jobs whose targets come later (:meth:`loopback.Prometheus.set_targets`).
    ``dead_nodes`` (``host:port`` where nothing listens) are scraped as node_exporter targets too, to
    exercise NodeDown.
    """
    with loopback.node_exporter(workdir) as node_address:
        exported = {"node_exporter": catalog.scrape_names(f"http://{node_address}/metrics")}
        scraped = [loopback.ScrapeJob(DEPLOYMENT.node_exporter_job, [node_address, *dead_nodes]), *jobs]
        with loopback.prometheus(workdir / "prometheus", scraped, RULE_FILES) as prometheus:
            started = time.time()
            prometheus.wait_for_targets([prometheus.address, node_address])
            yield Stack(prometheus, started, exported)


@contextlib.contextmanager
def run(
    workdir: pathlib.Path,
    settings: Settings = Settings(),
    dead_nodes: Sequence[str] = (),
    probes: Mapping[str, Mapping[str, str]] | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Iterator[Scenario]:
    """Runs the scenario; yields it with Prometheus still up (and the serving workloads still running).

    ``probes`` maps an observation (:data:`TRAINING`, :data:`SERVING_HEALTHY`, :data:`SERVING_ERRORS`,
    :data:`DATANODE_LOST`) to ``{name: PromQL}`` queries evaluated at that moment, into
    :attr:`Observation.values`.
    ``progress`` receives a line as each phase starts.
    """
    probes = probes or {}
    jobs = [
        loopback.ScrapeJob(TRAINING_JOB),
        loopback.ScrapeJob(SERVING_JOB, metrics_path=METRICS_PATH),
        loopback.ScrapeJob(INFER_JOB),
        loopback.ScrapeJob(INGEST_JOB),
        loopback.ScrapeJob(KAFKA_JMX_JOB),
        loopback.ScrapeJob(HDFS_JMX_JOB),
    ]
    with contextlib.ExitStack() as services:
        started = time.time()
        # Launched first: its workers spend seconds importing TensorFlow while Prometheus starts.
        job = _launch_training(settings, workdir / "training")
        services.callback(job.stop)
        running = services.enter_context(stack(workdir, dead_nodes, jobs))
        scenario = Scenario(running, settings)
        progress(
            f"Prometheus at {running.prometheus.url}; training {settings.run_name} with {TRAINING_WORKERS} workers"
        )
        _follow_training(scenario, job, probes.get(TRAINING, {}))
        scenario.phases[TRAINING] = (started, time.time())
        traffic_started, serving = _serve(
            scenario, services, job.output, workdir / "serving", probes, progress
        )
        scenario.ended = time.time()
        scenario.phases[SERVING] = (traffic_started, scenario.ended)
        progress("stream-ingest stops and the only DataNode is killed")
        _lose_datanode(scenario, serving, probes.get(DATANODE_LOST, {}))
        yield scenario


def _wait_for(
    prometheus: loopback.Prometheus,
    expr: str,
    what: str,
    alive: Callable[[], bool] = lambda: True,
    timeout_s: float = 120,
) -> list[dict[str, Any]]:
    """Until ``expr`` returns a series; fails when ``alive()`` turns false first or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (result := prometheus.query(expr)):
        if not alive():
            raise ScenarioError(f"{what}: the workload ended before Prometheus saw {expr!r}")
        if time.monotonic() > deadline:
            raise ScenarioError(f"{what}: Prometheus did not see {expr!r} within {timeout_s:g} s")
        time.sleep(0.25)
    return result


def _wait_for_scrape_after(prometheus: loopback.Prometheus, job: str, moment: float) -> None:
    """Until every target of ``job`` has been scraped after ``moment`` (unix seconds)."""
    _wait_for(
        prometheus, f'min(timestamp(up{{job="{job}"}})) > {moment:.3f}', f"a scrape of {job}", timeout_s=30
    )


def _observe(prometheus: loopback.Prometheus, queries: Mapping[str, str]) -> Observation:
    """After two more rule evaluations (so the rules have seen the latest scrape): rule groups and ``queries``."""
    groups = live.wait_for_rule_evaluations(prometheus)
    values = {name: prometheus.query(expr) for name, expr in queries.items()}
    return Observation(time.time(), groups, values)


def _launch_training(settings: Settings, workdir: pathlib.Path) -> local_workloads.TrainingJob:
    data = local_workloads.synthetic_dataset(workdir / "data", settings.train_records)
    return local_workloads.TrainingJob(
        workdir,
        data,
        run_name=settings.run_name,
        workers=TRAINING_WORKERS,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        checkpoint_every=settings.checkpoint_every,
    )


def _follow_training(scenario: Scenario, job: local_workloads.TrainingJob, probes: Mapping[str, str]) -> None:
    """Scrapes the workers as they come up, observes the run mid-way, waits for it to finish."""
    settings, prometheus = scenario.settings, scenario.stack.prometheus
    targets = job.wait_for_metrics_targets(timeout_s=120)
    prometheus.set_targets(TRAINING_JOB, list(targets.values()))
    run = f'run="{settings.run_name}"'
    what = "the training run stepping and checkpointing"
    stepping = f"count(mlstack_train_steps_total{{{run}}} > 0) == {TRAINING_WORKERS}"
    _wait_for(prometheus, stepping, what, job.child.alive)
    checkpointed = f"mlstack_train_last_checkpoint_timestamp_seconds{{{run}}} > 0"
    _wait_for(prometheus, checkpointed, what, job.child.alive)
    for rank, target in targets.items():
        scenario.stack.exported_here[f"training worker rank {rank}"] = catalog.scrape_names(
            f"http://{target}/metrics"
        )
    scenario.observations[TRAINING] = _observe(prometheus, probes)
    steps = prometheus.query(f"max(mlstack_train_steps_total{{{run}}})")
    scenario.training_steps_observed = float(steps[0]["value"][1]) if steps else 0
    job.wait(timeout_s=600)
    prometheus.set_targets(TRAINING_JOB, [])  # the workers are gone, as their pods would be
    scenario.training_summary = json.loads((job.output / "training.json").read_text(encoding="utf-8"))


@dataclasses.dataclass(frozen=True)
class _Serving:
    """The serving workloads, running: serve-dev, HDFS, the Kafka node, infer-worker and stream-ingest (each
    Kafka service with its metrics ``host:port``)."""

    server: LocalDevServer
    hdfs: local_workloads.LocalHdfs
    kafka: local_workloads.LocalKafka
    infer: ChildCommand
    infer_target: str
    ingest: ChildCommand
    ingest_target: str


def _serve(
    scenario: Scenario,
    services: contextlib.ExitStack,
    model_dir: pathlib.Path,
    workdir: pathlib.Path,
    probes: Mapping[str, Mapping[str, str]],
    progress: Callable[[str], None],
) -> tuple[float, _Serving]:
    """Exports and serves the model, runs the serving traffic; returns when the traffic started, and the
    serving workloads (still running)."""
    settings, prometheus = scenario.settings, scenario.stack.prometheus
    progress(
        "exporting the trained model while serve-dev waits for it; a real HDFS and a real Kafka node start "
        "with the JMX exporter agent, then infer-worker and stream-ingest (its shards on HDFS)"
    )
    serving = _start_serving(scenario, services, model_dir, workdir)
    progress(f"{settings.load_seconds:g} s of load test while Kafka requests and records are produced")
    traffic_started = time.time()
    _load(scenario, serving, workdir)
    _wait_until_consumed(scenario, serving)
    scenario.observations[SERVING_HEALTHY] = _observe(prometheus, probes.get(SERVING_HEALTHY, {}))

    progress("a burst of malformed requests")
    # A quarter as many malformed requests as valid ones so far: far over the 5% error ratio.
    burst = max(100, (scenario.loadtest["requests"] + scenario.inference_requests) // 4)
    scenario.malformed_codes += local_workloads.send_malformed(serving.server.rest_url, burst)
    _wait_for_scrape_after(prometheus, SERVING_JOB, time.time())
    scenario.observations[SERVING_ERRORS] = _observe(prometheus, probes.get(SERVING_ERRORS, {}))
    return traffic_started, serving


def _start_serving(
    scenario: Scenario, services: contextlib.ExitStack, model_dir: pathlib.Path, workdir: pathlib.Path
) -> _Serving:
    """Starts the serving workloads (stopped with ``services``), once serve-dev serves the exported model
    and Prometheus scrapes them all."""
    models = workdir / "models"
    export = local_workloads.start_export(model_dir, models, workdir)
    services.callback(export.kill)  # a no-op once it has finished
    server = local_workloads.serve(models / MODEL_NAME, workdir)
    services.callback(server.terminate)
    exporter_configs = local_workloads.jmx_exporter_configs(workdir / "jmx-exporter")
    # Launched first, ready by the time the Kafka node is (their JVMs start side by side).
    hdfs = local_workloads.LocalHdfs(workdir / "hdfs", loopback.free_port(), exporter_configs["hdfs"])
    services.callback(hdfs.close)
    kafka = local_workloads.LocalKafka(
        KAFKA_TOPICS, workdir / "kafka", loopback.free_port(), exporter_configs["kafka"]
    )
    services.callback(kafka.close)
    hdfs.wait_until_ready()
    infer, infer_target = local_workloads.start_kafka_service(
        "infer-worker",
        kafka.bootstrap,
        workdir,
        ["--server-url", server.rest_url, "--max-batch-size", "16", "--max-batch-wait-ms", "20"],
    )
    services.callback(infer.terminate)
    ingest, ingest_target = local_workloads.start_kafka_service(
        "stream-ingest",
        kafka.bootstrap,
        workdir,
        ["--output", f"{hdfs.url}{INGEST_PATH}", "--shard-size", "100", "--flush-interval-seconds", "1"],
    )
    services.callback(ingest.terminate)
    local_workloads.finish(export, timeout_s=300)
    scenario.served_version = local_workloads.wait_until_available(server)
    server_target = f"127.0.0.1:{server.rest_port}"
    prometheus = scenario.stack.prometheus
    targets = {
        SERVING_JOB: server_target,
        INFER_JOB: infer_target,
        INGEST_JOB: ingest_target,
        KAFKA_JMX_JOB: kafka.exporter_target,
        HDFS_JMX_JOB: hdfs.exporter_target,
    }
    for job, target in targets.items():
        prometheus.set_targets(job, [target])
    prometheus.wait_for_targets(list(targets.values()))
    return _Serving(server, hdfs, kafka, infer, infer_target, ingest, ingest_target)


def _load(scenario: Scenario, serving: _Serving, workdir: pathlib.Path) -> None:
    """The load test, while another thread produces the Kafka traffic."""
    failures: list[BaseException] = []
    producer = threading.Thread(
        target=_recording(lambda: _produce_during_load(scenario, serving), failures), name="produce"
    )
    producer.start()
    scenario.loadtest = local_workloads.loadtest(
        serving.server.rest_url, scenario.settings.load_seconds, workdir
    )
    producer.join()
    if failures:
        raise ScenarioError(f"producing Kafka traffic failed: {failures[0]}") from failures[0]


def _produce_during_load(scenario: Scenario, serving: _Serving) -> None:
    """Rounds of inference requests (with poison) and ingest records, spread over the load test."""
    settings = scenario.settings
    local_workloads.wait_for_answered_requests(serving.server)  # the load test is sending
    pause = settings.load_seconds / settings.kafka_rounds
    middle = settings.kafka_rounds // 2
    for round_ in range(settings.kafka_rounds):
        requests = local_workloads.inference_requests(settings.messages_per_round, seed=round_)
        scenario.inference_requests += len(requests)
        # Dead letters every other round. The few errors that reach serve-dev (an image the model
        # rejects, a malformed request) come mid-load, among many good requests, so the healthy
        # error ratio stays far under ServingErrorRateHigh's however slowly the load test runs;
        # serve-dev's error series exists from then on, so the burst later shows as a rate.
        poison = (
            local_workloads.poison_requests(round_, with_model_rejection=round_ == middle)
            if round_ % 2 == 0 or round_ == middle
            else []
        )
        serving.kafka.produce(REQUESTS_TOPIC, [*requests, *poison])
        records = local_workloads.ingest_records(settings.messages_per_round, seed=round_)
        scenario.ingest_records += len(records) - 1  # the last one is rejected
        serving.kafka.produce(INGEST_TOPIC, records)
        if round_ == middle:
            scenario.malformed_codes += local_workloads.send_malformed(serving.server.rest_url, 1)
        time.sleep(pause)


def _wait_until_consumed(scenario: Scenario, serving: _Serving) -> None:
    """Until Prometheus has seen the Kafka services consume every message; then the names each serving
    workload serves."""
    prometheus, what = scenario.stack.prometheus, "the Kafka services consuming every message"
    _wait_for(
        prometheus,
        f'sum(mlstack_infer_messages_total{{outcome="ok"}}) >= {scenario.inference_requests}',
        what,
        serving.infer.alive,
    )
    _wait_for(
        prometheus,
        f"sum(mlstack_ingest_records_total) >= {scenario.ingest_records}",
        what,
        serving.ingest.alive,
    )
    for source, url in (
        ("serve-dev", f"{serving.server.rest_url}{METRICS_PATH}"),
        ("infer-worker", f"http://{serving.infer_target}/metrics"),
        ("stream-ingest", f"http://{serving.ingest_target}/metrics"),
        (KAFKA_JMX_SOURCE, f"http://{serving.kafka.exporter_target}/metrics"),
        (HDFS_JMX_SOURCE, f"http://{serving.hdfs.exporter_target}/metrics"),
    ):
        scenario.stack.exported_here[source] = catalog.scrape_names(url)


def _lose_datanode(scenario: Scenario, serving: _Serving, probes: Mapping[str, str]) -> None:
    """Stops stream-ingest (HDFS's only writer), SIGKILLs the only DataNode and observes once Prometheus
    sees the NameNode report the blocks it held missing: 2 heartbeat rechecks and 10 heartbeats after the
    kill (20 s with HdfsCluster's settings), the NameNode declares it dead."""
    serving.ingest.terminate()
    serving.hdfs.kill_datanode()
    _wait_for(
        scenario.stack.prometheus,
        "max(hdfs_namenode_missing_blocks) > 0",
        "the NameNode declaring the killed DataNode's blocks missing",
        timeout_s=120,
    )
    scenario.observations[DATANODE_LOST] = _observe(scenario.stack.prometheus, probes)


def _recording(function: Callable[[], None], failures: list[BaseException]) -> Callable[[], None]:
    """``function`` for a thread: an exception is kept in ``failures`` for the main thread to raise."""

    def target() -> None:
        try:
            function()
        except BaseException as error:  # re-raised by the main thread
            failures.append(error)

    return target
