"""Training metrics: exactly the names and labels of docs/interfaces.md, served on a bound port."""

import pathlib
import re
import socket

import pytest
import requests

from workloads.core.errors import WorkloadError
from workloads.training.metrics import TrainingMetrics

INTERFACES = pathlib.Path(__file__).resolve().parents[2] / "docs" / "interfaces.md"


def documented_training_metrics():
    text = INTERFACES.read_text()
    section = text[text.index("Training workers") : text.index("TF Serving, and the development server")]
    return set(re.findall(r"\| `(mlstack_train_[a-z_]+)` \|", section))


def scrape(port):
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_every_documented_metric_is_exposed_with_run_framework_and_rank_labels():
    metrics = TrainingMetrics("demo-run", "tensorflow", 1)
    port = metrics.serve(0, address="127.0.0.1")
    try:
        metrics.record_step(loss=0.5, samples=32, seconds=0.02)
        metrics.record_checkpoint()
        text = scrape(port)
    finally:
        metrics.close()
    documented = documented_training_metrics()
    assert len(documented) == 8
    for name in documented:
        pattern = (
            rf'^{name}(_bucket|_count|_sum)?\{{[^}}]*framework="tensorflow"[^}}]*rank="1"[^}}]*run="demo-run"'
        )
        assert re.search(pattern, text, re.M), f"{name} missing or mislabelled"
    families = set(re.findall(r"^# TYPE (mlstack_train_\w+) ", text, re.M))
    families = {n for n in families if not n.endswith("_created")}  # prometheus_client's creation times
    assert {n if n in documented else n + "_total" for n in families} == documented


def test_steps_samples_and_loss_are_recorded():
    metrics = TrainingMetrics("r", "pytorch", 0)
    port = metrics.serve(0, address="127.0.0.1")
    try:
        for loss in (2.0, 1.0):
            metrics.record_step(loss=loss, samples=64, seconds=0.01)
        metrics.record_resume(40)
        text = scrape(port)
    finally:
        metrics.close()
    labels = 'framework="pytorch",rank="0",run="r"'
    assert f"mlstack_train_steps_total{{{labels}}} 2.0" in text
    assert f"mlstack_train_samples_total{{{labels}}} 128.0" in text
    assert f"mlstack_train_loss{{{labels}}} 1.0" in text
    assert f"mlstack_train_resumed_step{{{labels}}} 40.0" in text
    assert f"mlstack_train_step_duration_seconds_count{{{labels}}} 2.0" in text


def test_loss_and_checkpoint_time_have_no_series_before_their_first_value():
    metrics = TrainingMetrics("r", "tensorflow", 0)
    port = metrics.serve(0, address="127.0.0.1")
    try:
        before = scrape(port)
        metrics.record_step(loss=0.7, samples=8, seconds=0.01)
        metrics.record_checkpoint(timestamp=1_800_000_000.0)
        after = scrape(port)
    finally:
        metrics.close()
    for name in ("mlstack_train_loss{", "mlstack_train_last_checkpoint_timestamp_seconds{"):
        assert name not in before, f"{name} reads a made-up value before it has one"
        assert name in after
    assert (
        'mlstack_train_last_checkpoint_timestamp_seconds{framework="tensorflow",rank="0",run="r"} 1.8e+09'
        in after
    )


def test_port_zero_binds_distinct_free_ports():
    first, second = TrainingMetrics("a", "tensorflow", 0), TrainingMetrics("a", "tensorflow", 1)
    try:
        ports = first.serve(0, address="127.0.0.1"), second.serve(0, address="127.0.0.1")
        assert ports[0] != ports[1] and all(p > 0 for p in ports)
    finally:
        first.close()
        second.close()


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(WorkloadError, match="--metrics-port"):
            TrainingMetrics("r", "tensorflow", 0).serve(taken.getsockname()[1], address="127.0.0.1")
