"""The clients retry what may succeed again, and only that, and say what the server answered.

``flaky_rest_server`` and ``flaky_grpc_server`` are test doubles standing in for an overloaded or
restarting TF Serving: real HTTP and gRPC servers on loopback that answer from a script (503, 400,
UNAVAILABLE, a slow answer ...), so the clients' retry rules are checked on the wire, exactly.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from concurrent import futures
from typing import ClassVar

import grpc
import numpy as np
import pytest

from workloads.serving import tensors
from workloads.serving.client import GrpcClient, RestClient, RetryPolicy, ServingError

FAST = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
GOOD_ANSWER = {"outputs": {"scores": [[0.25, 0.75]], "class_ids": [1]}}


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        server.requests += 1
        status, body, delay = server.script.pop(0) if server.script else (200, GOOD_ANSWER, 0)
        time.sleep(delay)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky_rest_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ScriptedHandler)
    server.script, server.requests = [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def rest_client(server, timeout_s: float = 5.0) -> RestClient:
    return RestClient(f"http://127.0.0.1:{server.server_address[1]}", "m", timeout_s=timeout_s, retry=FAST)


def test_busy_answers_are_retried_until_one_succeeds(flaky_rest_server):
    flaky_rest_server.script = [(503, {"error": "loading"}, 0), (429, {"error": "queue full"}, 0)]
    answer = rest_client(flaky_rest_server).predict_images(np.zeros((1, 28, 28)))
    assert flaky_rest_server.requests == 3
    np.testing.assert_allclose(answer.scores, [[0.25, 0.75]])
    assert answer.class_ids.tolist() == [1]


def test_bad_requests_are_not_retried_and_the_error_quotes_the_server(flaky_rest_server):
    flaky_rest_server.script = [(400, {"error": "input 'images' has shape [1, 3]"}, 0)]
    with pytest.raises(ServingError) as raised:
        rest_client(flaky_rest_server).predict_images(np.zeros((1, 3)))
    assert flaky_rest_server.requests == 1
    error = raised.value
    assert error.http_status == 400 and not error.retryable
    assert "400 INVALID_ARGUMENT: input 'images' has shape [1, 3]" in str(error) and ":predict" in str(error)


def test_a_server_that_keeps_failing_gives_up_after_the_attempts_and_says_so(flaky_rest_server):
    flaky_rest_server.script = [(503, {"error": "overloaded"}, 0)] * 5
    with pytest.raises(ServingError, match="gave up after 3 attempts") as raised:
        rest_client(flaky_rest_server).predict_images(np.zeros((1, 28, 28)))
    assert flaky_rest_server.requests == 3 and raised.value.retryable


def test_a_slow_answer_times_out_and_is_retried(flaky_rest_server):
    flaky_rest_server.script = [(200, GOOD_ANSWER, 1.0)]
    answer = rest_client(flaky_rest_server, timeout_s=0.3).predict_images(np.zeros((1, 28, 28)))
    assert flaky_rest_server.requests == 2 and answer.class_ids.tolist() == [1]


def test_nobody_listening_is_retryable_and_says_where_it_tried(free_port):
    client = RestClient(f"http://127.0.0.1:{free_port}", "m", retry=FAST)
    with pytest.raises(ServingError, match=f"is the model server running at http://127.0.0.1:{free_port}"):
        client.model_status()


def test_a_version_and_a_label_together_are_refused_before_sending(flaky_rest_server):
    with pytest.raises(ValueError, match="not both"):
        rest_client(flaky_rest_server).predict_images(np.zeros((1, 28, 28)), version=1, label="stable")
    assert flaky_rest_server.requests == 0


@pytest.fixture
def flaky_grpc_server():
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Scripted(prediction_service_pb2_grpc.PredictionServiceServicer):
        script: ClassVar[list] = []
        calls = 0

        def Predict(self, request, context):
            Scripted.calls += 1
            if Scripted.script:
                code, details = Scripted.script.pop(0)
                context.abort(code, details)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = 7
            response.outputs["scores"].CopyFrom(tensors.make_tensor_proto(np.array([[0.5, 0.5]], np.float32)))
            response.outputs["class_ids"].CopyFrom(tensors.make_tensor_proto(np.array([0])))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Scripted(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield Scripted, f"127.0.0.1:{port}"
    server.stop(0)


def test_grpc_retries_unavailable_but_not_invalid_argument(flaky_grpc_server):
    scripted, target = flaky_grpc_server
    scripted.script = [
        (grpc.StatusCode.UNAVAILABLE, "restarting"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "busy"),
    ]
    client = GrpcClient(target, "m", retry=FAST)
    answer = client.predict_images(np.zeros((1, 28, 28)))
    assert scripted.calls == 3 and answer.model_version == 7
    scripted.calls, scripted.script = (
        0,
        [(grpc.StatusCode.INVALID_ARGUMENT, "Expects arg 'images' to be float")],
    )
    with pytest.raises(ServingError, match="INVALID_ARGUMENT: Expects arg 'images' to be float"):
        client.predict_images(np.zeros((1, 28, 28)))
    assert scripted.calls == 1
    client.close()


def test_backoff_delays_are_capped_and_one_fewer_than_the_attempts():
    delays = list(RetryPolicy(attempts=6, initial_backoff_s=0.1, max_backoff_s=0.3).delays())
    assert len(delays) == 5
    assert all(0 <= d <= cap for d, cap in zip(delays, [0.1, 0.2, 0.3, 0.3, 0.3], strict=True))
