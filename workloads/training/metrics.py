"""Prometheus metrics of a training worker, the same for every framework and strategy.

The names and labels are the contract in ``docs/interfaces.md`` ("Prometheus metrics"); dashboards
and alerts are built on them. Each worker serves its own registry on ``--metrics-port`` (0 = any free
port; the bound port is logged, so local multi-process runs never collide).
"""

from __future__ import annotations

import logging
import time

from workloads.core import logs
from workloads.core.errors import WorkloadError

log = logging.getLogger(__name__)

LABELS = ("run", "framework", "rank")
METRICS_PORT = 9410  # a worker's /metrics (docs/interfaces.md, "Ports"); local runs add the rank
# Step times from a millisecond (small CPU models) to a minute (large GPU steps).
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class TrainingMetrics:
    """``mlstack_train_*`` for one worker; call the ``record_*`` methods from the training loop."""

    def __init__(self, run: str, framework: str, rank: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.labels = {"run": run, "framework": framework, "rank": str(rank)}
        self.port: int | None = None
        self._server = None

        def labelled(metric):
            return metric.labels(**self.labels)

        common = {"labelnames": LABELS, "registry": self.registry}
        self.steps = labelled(Counter("mlstack_train_steps", "Optimizer steps completed", **common))
        self.samples = labelled(
            Counter("mlstack_train_samples", "Training samples processed by this worker", **common)
        )
        # Loss and checkpoint time have no honest value before the first step / checkpoint, so their
        # series appear with the first real value instead of reading 0 (a perfect loss, a 1970 checkpoint).
        self._loss = Gauge("mlstack_train_loss", "Loss of the last step", **common)
        self.step_duration = labelled(
            Histogram(
                "mlstack_train_step_duration_seconds", "Wall time of one step", buckets=STEP_BUCKETS, **common
            )
        )
        self._last_checkpoint = Gauge(
            "mlstack_train_last_checkpoint_timestamp_seconds",
            "Unix time of the last checkpoint written (chief) or restored",
            **common,
        )
        self.epoch = labelled(Gauge("mlstack_train_epoch", "Current epoch", **common))
        self.start_time = labelled(
            Gauge(
                "mlstack_train_start_timestamp_seconds", "Process start; changes() counts restarts", **common
            )
        )
        self.resumed_step = labelled(
            Gauge("mlstack_train_resumed_step", "Step the process resumed from (0 = fresh start)", **common)
        )
        self.start_time.set(time.time())

    def serve(self, port: int, address: str = "0.0.0.0") -> int:
        """Starts the HTTP endpoint; returns (and logs) the port it bound."""
        from prometheus_client import start_http_server

        try:
            self._server, _ = start_http_server(port, addr=address, registry=self.registry)
        except OSError as error:
            raise WorkloadError(
                f"cannot serve metrics on {address}:{port} ({error.strerror}); pass another --metrics-port, "
                "or 0 for any free port"
            ) from None
        self.port = self._server.server_port
        log.info(
            "serving metrics on port %d",
            self.port,
            extra=logs.fields(metrics_port=self.port, path="/metrics"),
        )
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def record_step(self, loss: float, samples: int, seconds: float) -> None:
        self.steps.inc()
        self.samples.inc(samples)
        self._loss.labels(**self.labels).set(loss)
        self.step_duration.observe(seconds)

    def record_epoch(self, epoch: int) -> None:
        self.epoch.set(epoch)

    def record_checkpoint(self, timestamp: float | None = None) -> None:
        self._last_checkpoint.labels(**self.labels).set(time.time() if timestamp is None else timestamp)

    def record_resume(self, step: int) -> None:
        self.resumed_step.set(step)
