"""The mlstack workloads as real child processes on loopback, for the live checks and the snapshots.

Each runs exactly as a user runs it (``python -m workloads <command>``, this checkout first on the
child's ``PYTHONPATH``) through the launcher the demo and the workloads tests use
(:mod:`workloads.serving.dev.process`): a multi-worker TensorFlow training job, the exporter,
``serve-dev``, ``loadtest``, ``infer-worker`` and ``stream-ingest``. Kafka is a real node, and HDFS a
real NameNode and DataNode, of the releases `make releases` builds, each with its role's JMX exporter agent
and rules (:class:`LocalKafka`, :class:`LocalHdfs`). Nothing here stands in for a workload's or a daemon's
metrics: Prometheus scrapes the processes themselves.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any

from workloads.serving.dev.metrics import REQUEST_COUNT
from workloads.serving.dev.process import ChildCommand, LocalDevServer, start_dev_server
from workloads.serving.tfs_config import METRICS_PATH, MODEL_NAME
from workloads.training import metrics as training_metrics

QUIET_KAFKA = {"log_level": 3}  # librdkafka errors only
# Requests serve-dev must answer 400 INVALID_ARGUMENT (TF Serving's code for a malformed request).
MALFORMED_BODIES = (
    b"{this is not json",
    json.dumps({"instances": [[1.0, 2.0]]}).encode(),  # shape [1, 2], the model takes [N, 28, 28]
    json.dumps({"instances": [[["a"] * 28] * 28]}).encode(),  # strings, the model takes float32
)


class WorkloadFailed(RuntimeError):
    """A workload exited or answered unexpectedly; the message quotes the end of its log."""


def _tail(child: ChildCommand, characters: int = 3000) -> str:
    return f"its log ({child.log_path}) ends with:\n{child.log()[-characters:]}"


def synthetic_dataset(directory: pathlib.Path, train_records: int) -> pathlib.Path:
    """Synthetic Fashion-MNIST shards (``train/`` and ``test/``) written by the workloads' own ingest code."""
    from workloads.data import datasets

    datasets.ingest_synthetic(
        str(directory), train_records=train_records, test_records=256, seed=0, shard_size=256
    )
    return directory


class TrainingJob:
    """``train --local-workers N``: a local TFJob of N TensorFlow MultiWorkerMirroredStrategy workers.

    Each worker serves its metrics on a free port (the launcher passes ``--metrics-port 0``) and logs
    it; :meth:`metrics_targets` reads those log lines.
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        data: pathlib.Path,
        *,
        run_name: str,
        workers: int,
        epochs: int,
        batch_size: int,
        checkpoint_every: int,
    ) -> None:
        self.workers = workers
        self.output = workdir / "model"
        self.child = ChildCommand.start(
            "train",
            [
                "--data", str(data),
                "--output", str(self.output),
                "--checkpoint-dir", str(workdir / "checkpoints"),
                "--checkpoint-every", str(checkpoint_every),
                "--local-workers", str(workers),
                "--epochs", str(epochs),
                "--batch-size", str(batch_size),
                "--run-name", run_name,
                "--max-restarts", "0",
                "--timeout", "600",
            ],
            workdir / "train.log",
        )  # fmt: skip

    def metrics_targets(self) -> dict[int, str]:
        """``{rank: "127.0.0.1:port"}`` of the workers that have logged their metrics port so far."""
        ports = {}
        for line in self.child.log().splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("logger") == training_metrics.log.name and "metrics_port" in record:
                ports[int(record["rank"])] = f"127.0.0.1:{record['metrics_port']}"
        return ports

    def wait_for_metrics_targets(self, timeout_s: float) -> dict[int, str]:
        deadline = time.monotonic() + timeout_s
        while len(targets := self.metrics_targets()) < self.workers:
            if not self.child.alive():
                raise WorkloadFailed(
                    f"training exited with {self.child.process.returncode} before every worker served metrics; "
                    + _tail(self.child)
                )
            if time.monotonic() > deadline:
                raise WorkloadFailed(
                    f"training workers did not log their metrics ports within {timeout_s:g} s; {_tail(self.child)}"
                )
            time.sleep(0.1)
        return targets

    def wait(self, timeout_s: float) -> None:
        """Until the job finishes; a non-zero exit is an error quoting its log."""
        try:
            code = self.child.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.child.kill()
            raise WorkloadFailed(
                f"training did not finish within {timeout_s:g} s; {_tail(self.child)}"
            ) from None
        if code != 0:
            raise WorkloadFailed(f"training exited with {code}; {_tail(self.child)}")

    def stop(self, timeout_s: float = 30) -> None:
        """Stops a job that still runs as Ctrl-C would: the launcher stops its workers, then exits."""
        if not self.child.alive():
            return
        self.child.process.send_signal(signal.SIGINT)
        try:
            self.child.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.child.kill()


def finish(child: ChildCommand, timeout_s: float) -> None:
    """Waits for a command to end; a non-zero exit, or none within ``timeout_s``, is an error quoting its log."""
    try:
        code = child.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        raise WorkloadFailed(
            f"{child.command} did not finish within {timeout_s:g} s; {_tail(child)}"
        ) from None
    if code != 0:
        raise WorkloadFailed(f"{child.command} exited with {code}; {_tail(child)}")


def start_export(model_dir: pathlib.Path, serving_base: pathlib.Path, workdir: pathlib.Path) -> ChildCommand:
    """``export``: publishes the trained model as the next version under ``serving_base/<MODEL_NAME>/``."""
    return ChildCommand.start(
        "export",
        ["--model-dir", str(model_dir), "--model-base-path", str(serving_base), "--model-name", MODEL_NAME],
        workdir / "export.log",
    )


def serve(model_base: pathlib.Path, workdir: pathlib.Path) -> LocalDevServer:
    """``serve-dev`` over ``model_base`` (which may have no version yet) on free REST and gRPC ports, once it listens."""
    model_base.mkdir(parents=True, exist_ok=True)
    return start_dev_server(workdir, "--model-base-path", str(model_base), "--model-name", MODEL_NAME)


def wait_until_available(server: LocalDevServer, timeout_s: float = 120) -> str:
    """Until serve-dev reports a version of the model ``AVAILABLE`` (as TF Serving's status API does); returns it."""
    deadline = time.monotonic() + timeout_s
    url = f"{server.rest_url}/v1/models/{MODEL_NAME}"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                statuses = json.load(response).get("model_version_status", [])
            available = [s["version"] for s in statuses if s.get("state") == "AVAILABLE"]
            if available:
                return max(available, key=int)
        except urllib.error.HTTPError as error:  # 404 until a version loads
            error.close()
        if not server.alive():
            raise WorkloadFailed(f"serve-dev exited with {server.process.returncode}; {_tail(server)}")
        if time.monotonic() > deadline:
            raise WorkloadFailed(
                f"no version of {MODEL_NAME} became AVAILABLE within {timeout_s:g} s; {_tail(server)}"
            )
        time.sleep(0.2)


def wait_for_answered_requests(server: LocalDevServer, timeout_s: float = 120) -> None:
    """Until serve-dev has answered a request with OK (its own request counter says so)."""
    deadline = time.monotonic() + timeout_s
    url = f"{server.rest_url}{METRICS_PATH}"
    while True:
        with urllib.request.urlopen(url, timeout=5) as response:
            page = response.read().decode("utf-8")
        if any(line.startswith(f"{REQUEST_COUNT}{{") and 'status="OK"' in line for line in page.splitlines()):
            return
        if time.monotonic() > deadline:
            raise WorkloadFailed(f"serve-dev answered no request OK within {timeout_s:g} s; {_tail(server)}")
        time.sleep(0.1)


def loadtest(rest_url: str, seconds: float, workdir: pathlib.Path) -> dict[str, Any]:
    """A closed-loop load test of valid requests; returns its report (report.json)."""
    output = workdir / "loadtest"
    child = ChildCommand.start(
        "loadtest",
        [
            "--server-url", rest_url,
            "--model-name", MODEL_NAME,
            "--concurrency", "2",
            "--duration", f"{seconds:g}",
            "--output-dir", str(output),
        ],
        workdir / "loadtest.log",
    )  # fmt: skip
    finish(child, timeout_s=seconds + 120)
    return json.loads((output / "report.json").read_text(encoding="utf-8"))


def send_malformed(rest_url: str, count: int) -> list[int]:
    """``count`` malformed predict requests over REST (cycling through :data:`MALFORMED_BODIES`); their HTTP codes."""
    codes = []
    url = f"{rest_url}/v1/models/{MODEL_NAME}:predict"
    for index in range(count):
        body = MALFORMED_BODIES[index % len(MALFORMED_BODIES)]
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                codes.append(response.status)
        except urllib.error.HTTPError as error:
            codes.append(error.code)
            error.close()
    return codes


def jmx_exporter_configs(directory: pathlib.Path) -> dict[str, str]:
    """``{"kafka": ..., "hdfs": ...}``: each role's jmx-exporter.yml as the role renders it (one playbook run)."""
    from tests.support.jmx_exporter import rendered_configs

    return rendered_configs(directory, ("kafka", "hdfs"))


class LocalKafka:
    """A real Kafka node on loopback (KRaft, controller and broker in one JVM: tests/support/kafka_release.py)
    from the release `make releases` builds, with the Prometheus JMX exporter agent that the kafka role runs by
    default and the role's rules (``exporter_config``, as :func:`jmx_exporter_configs` renders them) on
    ``exporter_target``: the data dashboard's Kafka panels read it as they read the brokers. The topics exist
    before it is returned; it runs until :meth:`close`."""

    def __init__(
        self, topics: Iterable[str], workdir: pathlib.Path, exporter_port: int, exporter_config: str
    ) -> None:
        from confluent_kafka import Producer

        from tests.support.jmx_exporter import agent, verified_jar
        from tests.support.kafka_release import KafkaNode
        from tests.support.releases import KAFKA

        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "jmx-exporter.yml"
        config.write_text(exporter_config)
        home = KAFKA.unpack(workdir / "release")
        self.exporter_target = f"127.0.0.1:{exporter_port}"
        self._node = KafkaNode(home, workdir / "node", jvm_opts=agent(verified_jar(), exporter_port, config))
        try:
            self._node.start()
            self._node.create_topics(list(topics))
        except BaseException:
            self._node.stop()
            raise
        self.bootstrap = self._node.bootstrap
        self._producer = Producer(
            {"bootstrap.servers": self.bootstrap, "enable.idempotence": True, **QUIET_KAFKA}
        )

    def produce(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        count = 0
        for key, value in records:
            self._producer.produce(topic, key=key, value=value)
            self._producer.poll(0)
            count += 1
        if remaining := self._producer.flush(30):
            raise WorkloadFailed(f"{remaining} records were not delivered to {topic}")
        return count

    def close(self) -> None:
        """Stops the node (a controlled shutdown); stop its consumers first."""
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        self._node.stop()


class LocalHdfs:
    """A real HDFS on loopback (one NameNode and one DataNode, each its own small JVM:
    tests/support/hadoop_release.py) from the release `make releases` builds, the NameNode with the
    Prometheus JMX exporter agent that the hdfs role runs by default and the role's rules (``exporter_config``,
    as :func:`jmx_exporter_configs` renders them) on ``exporter_target``: the data dashboard's HDFS panels read
    it as they read the NameNode. The DataNodes run no agent, as in the role. Formatted and launched when
    constructed, without waiting: :meth:`wait_until_ready` before using :attr:`url`; it runs until
    :meth:`close`."""

    def __init__(self, workdir: pathlib.Path, exporter_port: int, exporter_config: str) -> None:
        from tests.support.hadoop_release import HdfsCluster
        from tests.support.jmx_exporter import agent, verified_jar
        from tests.support.releases import HADOOP

        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "jmx-exporter.yml"
        config.write_text(exporter_config)
        home = HADOOP.unpack(workdir / "release")
        self.exporter_target = f"127.0.0.1:{exporter_port}"
        self._cluster = HdfsCluster(
            home, workdir / "cluster", namenode_jvm_opts=agent(verified_jar(), exporter_port, config)
        )
        self.url = self._cluster.url
        try:
            self._cluster.launch()
        except BaseException:
            self._cluster.stop()
            raise

    def wait_until_ready(self, timeout_s: float = 180) -> None:
        """Until the NameNode is out of safe mode with its DataNode live."""
        self._cluster.wait_until_ready(timeout_s)

    def kill_datanode(self) -> None:
        """SIGKILLs the DataNode, as a power cut would: once the NameNode declares it dead, every block
        (one replica each) is missing."""
        self._cluster.datanodes[0].kill()

    def close(self) -> None:
        """Stops the DataNode, then the NameNode (SIGTERM); stop its clients first."""
        self._cluster.stop()


def start_kafka_service(
    command: str, bootstrap: str, workdir: pathlib.Path, args: Sequence[str], timeout_s: float = 120
) -> tuple[ChildCommand, str]:
    """``infer-worker`` or ``stream-ingest`` with metrics on a free port; returns it and its metrics ``host:port``."""
    ready = workdir / f"{command}.ready.json"
    ready.unlink(missing_ok=True)
    child = ChildCommand.start(
        command,
        [
            "--bootstrap-servers", bootstrap,
            "--metrics-port", "0",
            "--metrics-host", "127.0.0.1",
            "--ready-file", str(ready),
            "--kafka-config", "session.timeout.ms=6000", "heartbeat.interval.ms=500",
            *args,
        ],
        workdir / f"{command}.log",
    )  # fmt: skip
    port = child.wait_for_ready_file(ready, timeout_s)["metrics_port"]
    return child, f"127.0.0.1:{port}"


def inference_requests(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Valid prediction requests for ``infer-worker`` (half pixels, half PNG; docs/serving.md)."""
    from workloads.serving import payloads
    from workloads.streaming.inference_messages import request_message

    requests = []
    for index, image in enumerate(payloads.synthetic_images(count, seed)):
        request_id = f"live-{seed}-{index}"
        value = (
            request_message(request_id, pixels=image)
            if index % 2
            else request_message(request_id, image=payloads.encode_image(image))
        )
        requests.append((request_id.encode(), value))
    return requests


def poison_requests(seed: int, *, with_model_rejection: bool) -> list[tuple[bytes, bytes]]:
    """Requests ``infer-worker`` must dead-letter: one that is not JSON and, when ``with_model_rejection``,
    one that only the model server can reject (it is no image), so it counts as a serving error too."""
    from workloads.streaming.inference_messages import request_message

    poison = [(f"poison-{seed}-json".encode(), b"{not json")]
    if with_model_rejection:
        request_id = f"poison-{seed}-image"
        poison.append((request_id.encode(), request_message(request_id, image=b"not an image")))
    return poison


def ingest_records(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Valid image records for ``stream-ingest``, and one it must reject (a label outside 0-9)."""
    from workloads.serving import payloads
    from workloads.streaming.ingest_messages import record_message

    images = payloads.synthetic_images(count + 1, seed)
    records = [
        (f"{seed}-{i}".encode(), record_message(i % 10, pixels=image)) for i, image in enumerate(images[:-1])
    ]
    return [*records, (f"{seed}-reject".encode(), record_message(99, pixels=images[-1]))]
