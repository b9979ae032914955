"""Server-side batching: merging, splitting, padding, load shedding and error isolation.

``doubling_model`` stands in for a SavedModel (the dev-server tests batch a real one): it doubles its
input, rejects negative rows like a model rejecting a bad image, and records every batch it ran.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from workloads.serving.codes import Code, ServingStatus, invalid_argument
from workloads.serving.dev.batching import Batcher
from workloads.serving.tfs_config import BatchingParameters


class Signature:
    name = "serving_default"


class DoublingModel:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[int] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, _model, _signature, inputs):
        x = inputs["x"]
        with self.lock:
            self.batches.append(len(x))
        time.sleep(self.delay_s)
        if (x < 0).any():
            raise invalid_argument("negative input")
        return {"y": x * 2}


@pytest.fixture
def doubling_model() -> DoublingModel:
    return DoublingModel(delay_s=0.01)


def params(**overrides) -> BatchingParameters:
    values = {
        "max_batch_size": 8,
        "batch_timeout_micros": 20_000,
        "max_enqueued_batches": 100,
        "num_batch_threads": 1,
    }
    return BatchingParameters(**{**values, **overrides})


def submit_concurrently(batcher: Batcher, rows: list[np.ndarray]) -> list:
    model = object()
    start = threading.Barrier(len(rows))

    def one(x):
        start.wait()
        try:
            return batcher.submit(model, Signature(), {"x": x})["y"]
        except ServingStatus as error:
            return error

    with ThreadPoolExecutor(len(rows)) as pool:
        return list(pool.map(one, rows))


def test_concurrent_requests_share_batches_and_each_gets_its_own_rows(doubling_model):
    batcher = Batcher(params(), doubling_model)
    rows = [np.full((1 + i % 2, 3), float(i)) for i in range(16)]
    answers = submit_concurrently(batcher, rows)
    batcher.stop()
    for x, y in zip(rows, answers, strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert len(doubling_model.batches) < 16
    assert max(doubling_model.batches) <= 8


def test_a_lone_request_runs_after_the_timeout_without_waiting_for_company(doubling_model):
    batcher = Batcher(params(batch_timeout_micros=1000), doubling_model)
    answer = batcher.submit(object(), Signature(), {"x": np.ones((2, 3))})
    batcher.stop()
    np.testing.assert_array_equal(answer["y"], np.full((2, 3), 2.0))
    assert doubling_model.batches == [2]


def test_batches_are_padded_to_an_allowed_size_and_the_padding_is_dropped(doubling_model):
    batcher = Batcher(
        params(max_batch_size=8, allowed_batch_sizes=(4, 8), batch_timeout_micros=1000), doubling_model
    )
    answer = batcher.submit(object(), Signature(), {"x": np.arange(3.0).reshape(3, 1)})
    batcher.stop()
    assert doubling_model.batches == [4]
    np.testing.assert_array_equal(answer["y"], np.array([[0.0], [2.0], [4.0]]))


def test_a_bad_request_in_a_batch_fails_alone(doubling_model):
    batcher = Batcher(params(), doubling_model)
    rows = [np.full((1, 2), -1.0 if i == 3 else float(i)) for i in range(8)]
    answers = submit_concurrently(batcher, rows)
    batcher.stop()
    for i, answer in enumerate(answers):
        if i == 3:
            assert isinstance(answer, ServingStatus) and answer.code == Code.INVALID_ARGUMENT
        else:
            np.testing.assert_array_equal(answer, rows[i] * 2)


def test_a_full_queue_sheds_load_with_unavailable():
    slow = DoublingModel(delay_s=0.3)
    batcher = Batcher(params(max_batch_size=1, max_enqueued_batches=2, batch_timeout_micros=0), slow)
    answers = submit_concurrently(batcher, [np.ones((1, 1)) for _ in range(8)])
    batcher.stop()
    shed = [a for a in answers if isinstance(a, ServingStatus)]
    assert shed and all(a.code == Code.UNAVAILABLE and "queue" in a.message for a in shed)
    assert any(not isinstance(a, ServingStatus) for a in answers)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.float32(1)}, "at least one dimension"),
        ({"x": np.ones((2, 1)), "z": np.ones((3, 1))}, "equal 0th-dimension"),
    ],
)
def test_inputs_that_cannot_be_batched_are_rejected(doubling_model, inputs, message):
    batcher = Batcher(params(), doubling_model)
    with pytest.raises(ServingStatus, match=message):
        batcher.submit(object(), Signature(), inputs)
    batcher.stop()
