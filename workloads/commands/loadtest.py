"""Load-test a model server (TF Serving or serve-dev): closed or open loop, JSON report and plots.

closed: --concurrency clients, each sending its next request when the previous one answered.
open:   requests arrive at --rate per second regardless of answers (at most --concurrency in
        flight); latency counts from the scheduled arrival, so an overloaded server shows it.

Writes OUTPUT_DIR/report.json (throughput, p50/p95/p99/max latency, errors by kind),
OUTPUT_DIR/latency_histogram.png and OUTPUT_DIR/latency_over_time.png, and prints the report.
Exits 1 when the error rate is above --max-error-rate. Retries are off by default so every
failure is counted.

Examples:
  python -m workloads loadtest --concurrency 16 --duration 30
  python -m workloads loadtest --mode open --rate 200 --server-url grpc://127.0.0.1:8500
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import sys
import threading
import time
from typing import Literal

from workloads.core import logs
from workloads.core.fsutil import atomic_write_text
from workloads.core.settings import at_most, non_negative, option, positive
from workloads.serving import loadtest, payloads
from workloads.serving.client_options import ClientOptions

HELP = "load-test a model server: closed/open loop, latency percentiles, plots"
log = logging.getLogger(__name__)


def _fraction(value: float) -> str | None:
    return non_negative(value) or at_most(1)(value)


@dataclasses.dataclass(frozen=True)
class Config(ClientOptions):
    mode: Literal["closed", "open"] = option(
        "closed", help="closed: N concurrent clients; open: constant arrival rate"
    )
    concurrency: int = option(
        8, help="closed: number of clients; open: most requests in flight at once", check=positive
    )
    rate: float = option(50.0, help="open loop: requests per second", check=positive)
    duration: float = option(10.0, help="seconds to run", check=positive)
    requests: int | None = option(
        None, help="stop after this many requests if that comes first", check=positive
    )
    batch_size: int = option(1, help="images per request", check=positive)
    warmup_requests: int = option(
        5, help="requests sent (and not measured) before the run", check=non_negative
    )
    output_dir: str = option("build/loadtest", help="where report.json and the PNG plots go")
    max_error_rate: float = option(
        0.01, help="exit 1 when more than this fraction of requests failed (0-1)", check=_fraction
    )
    seed: int = option(0, help="seed of the synthetic images")
    retries: int = option(0, help="retries per request; 0 counts every failure", check=non_negative)


def make_request(config: Config):
    """The request each simulated user sends: ``batch_size`` synthetic images, pixels or PNG."""
    images = payloads.synthetic_images(config.batch_size, config.seed)
    if config.signature == "serving_bytes":
        encoded = [payloads.encode_image(image) for image in images]
        return lambda client: client.predict_image_bytes(encoded, version=config.version, label=config.label)
    return lambda client: client.predict_images(images, version=config.version, label=config.label)


def run(config: Config) -> int:
    result = _load(config)
    summary = loadtest.report(
        result,
        target=config.server_url,
        model_name=config.model_name,
        signature=config.signature,
        batch_size=config.batch_size,
    )
    _write(config, result, summary)
    if summary["error_rate"] > config.max_error_rate:
        log.error(
            "error rate %.2f%% is above --max-error-rate %.2f%%: %s",
            100 * summary["error_rate"],
            100 * config.max_error_rate,
            summary["errors"],
        )
        return 1
    return 0


def _load(config: Config) -> loadtest.LoadResult:
    """The warm-up requests, then the load itself, with a progress bar."""
    spec = loadtest.LoadSpec(
        mode=config.mode,
        concurrency=config.concurrency,
        rate=config.rate,
        duration_s=config.duration,
        max_requests=config.requests,
    )
    send = make_request(config)
    with config.make_client() as client:
        for _ in range(config.warmup_requests):
            send(client)  # fails fast, with the server's answer, when the target is wrong
        log.info(
            "load test: %s loop, %s, %.0f s against %s",
            config.mode,
            f"{config.concurrency} clients" if config.mode == "closed" else f"{config.rate:g} req/s",
            config.duration,
            config.server_url,
        )
        tick, bar = _progress(config)
        try:
            return loadtest.run_load(client, send, spec, tick)
        finally:
            bar.close()


def _write(config: Config, result: loadtest.LoadResult, summary: dict) -> None:
    """report.json and the plots in --output-dir; the summary on stdout."""
    out_dir = pathlib.Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(summary, indent=2) + "\n")
    plots = loadtest.plot(result, out_dir, f"{config.mode} loop, {config.signature}")
    print(json.dumps(summary, indent=2), file=sys.stdout)
    log.info(
        "wrote %s and %d plots",
        out_dir / "report.json",
        len(plots),
        extra=logs.fields(throughput_rps=summary["throughput_rps"], errors=summary["errors"]),
    )


def _progress(config: Config):
    """A tqdm bar on a terminal (elapsed seconds and requests done); silent otherwise."""
    from tqdm import tqdm

    bar = tqdm(total=round(config.duration), unit="s", desc="load test", disable=None, leave=False)
    done = [0]
    start = time.monotonic()
    lock = threading.Lock()

    def tick(count: int) -> None:
        with lock:
            done[0] += count
            elapsed = min(round(time.monotonic() - start), bar.total)
            if elapsed > bar.n:
                bar.update(elapsed - bar.n)
                bar.set_postfix(requests=done[0])

    return tick, bar
