"""The clients against the development server: both protocols, both signatures, routing, errors, metrics."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests

from tests.workloads.conftest import MODEL
from tests.workloads.serving.processes import wait_until
from workloads.serving import payloads, tensors
from workloads.serving.client import GrpcClient, RestClient, RetryPolicy, ServingError, make_client

pytestmark = [pytest.mark.xdist_group("dev_server"), pytest.mark.slow]
IMAGES = payloads.synthetic_images(6, seed=3)


@pytest.fixture(scope="module")
def rest(dev_server):
    with make_client(dev_server.rest_url, MODEL, retry=RetryPolicy(attempts=1)) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(dev_server):
    with make_client(dev_server.grpc_url, MODEL, retry=RetryPolicy(attempts=1)) as client:
        yield client


@pytest.fixture(params=["rest", "grpc"])
def client(request, rest, grpc_client):
    return rest if request.param == "rest" else grpc_client


def predict_path(dev_server, route: str = "") -> str:
    return f"{dev_server.rest_url}/v1/models/{MODEL}{route}:predict"


def test_both_signatures_agree_over_both_protocols(rest, grpc_client):
    reference = rest.predict_images(IMAGES)
    assert reference.scores.shape == (6, 10) and reference.class_ids.shape == (6,)
    np.testing.assert_allclose(reference.scores.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(reference.class_ids, reference.scores.argmax(axis=1))
    answers = [
        grpc_client.predict_images(IMAGES),
        rest.predict_image_bytes([payloads.encode_image(i) for i in IMAGES]),
        grpc_client.predict_image_bytes([payloads.encode_image(i, mode="RGB") for i in IMAGES]),
    ]
    for answer in answers:
        np.testing.assert_allclose(answer.scores, reference.scores, atol=1e-5)
    # JPEG is lossy: the same image decodes to slightly different pixels, but the model still runs.
    jpeg = rest.predict_image_bytes([payloads.encode_image(i, "JPEG") for i in IMAGES])
    np.testing.assert_allclose(jpeg.scores, reference.scores, atol=0.1)


def test_images_of_any_size_are_resized_inside_the_graph(rest):
    from PIL import Image

    big = Image.fromarray(IMAGES[0]).resize((112, 112), Image.NEAREST)
    import io

    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    answer = rest.predict_image_bytes([buffer.getvalue()])
    assert answer.scores.shape == (1, 10)


def test_versions_and_labels_route_to_the_versions_they_name(client):
    v1, v2 = client.predict_images(IMAGES, version=1), client.predict_images(IMAGES, version=2)
    assert not np.allclose(v1.scores, v2.scores), "the two test versions must differ to tell them apart"
    np.testing.assert_allclose(client.predict_images(IMAGES, label="stable").scores, v1.scores, atol=1e-6)
    np.testing.assert_allclose(client.predict_images(IMAGES, label="canary").scores, v2.scores, atol=1e-6)
    latest = client.predict_images(IMAGES)
    np.testing.assert_allclose(latest.scores, v2.scores, atol=1e-6)
    if isinstance(client, GrpcClient):  # only gRPC answers say which version answered
        assert (v1.model_version, v2.model_version, latest.model_version) == (1, 2, 2)
        assert client.predict_images(IMAGES, label="stable").model_version == 1


@pytest.mark.parametrize(
    ("route", "http_status", "code", "message"),
    [
        ({"version": 7}, 404, "NOT_FOUND", "Specific(fashion_mnist, 7)"),
        ({"label": "nope"}, 400, "INVALID_ARGUMENT", "Unrecognized servable version label: nope"),
    ],
)
def test_unknown_versions_and_labels_fail_with_tf_servings_codes(client, route, http_status, code, message):
    with pytest.raises(ServingError) as raised:
        client.predict_images(IMAGES, **route)
    assert raised.value.code.name == code and message in str(raised.value)
    assert not raised.value.retryable
    if isinstance(client, RestClient):
        assert raised.value.http_status == http_status


def test_an_unknown_model_is_not_found(dev_server, client):
    other = make_client(
        dev_server.rest_url if isinstance(client, RestClient) else dev_server.grpc_url,
        "no_such_model",
        retry=RetryPolicy(attempts=1),
    )
    with pytest.raises(ServingError, match="NOT_FOUND"):
        other.predict_images(IMAGES)
    with pytest.raises(ServingError, match="Could not find any versions of model no_such_model"):
        other.model_status()
    other.close()


def test_status_lists_the_loaded_versions_and_metadata_the_interface_signatures(client):
    assert {(s.version, s.state) for s in client.model_status()} == {(1, "AVAILABLE"), (2, "AVAILABLE")}
    assert [(s.version, s.state) for s in client.model_status(label="stable")] == [(1, "AVAILABLE")]
    signatures = client.metadata()
    default, encoded = signatures["serving_default"], signatures["serving_bytes"]
    assert default["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert [int(d["size"]) for d in default["inputs"]["images"]["tensor_shape"]["dim"]] == [-1, 28, 28]
    assert encoded["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    for signature in (default, encoded):
        assert signature["outputs"]["scores"]["dtype"] == "DT_FLOAT"
        assert signature["outputs"]["class_ids"]["dtype"] == "DT_INT64"
        assert signature["method_name"] == "tensorflow/serving/predict"


def test_status_and_metadata_paths_match_tf_serving(dev_server):
    status = requests.get(f"{dev_server.rest_url}/v1/models/{MODEL}/versions/1", timeout=10).json()
    assert status == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    metadata = requests.get(
        f"{dev_server.rest_url}/v1/models/{MODEL}/labels/canary/metadata", timeout=10
    ).json()
    assert metadata["model_spec"] == {"name": MODEL, "signature_name": "", "version": "2"}
    assert "serving_default" in metadata["metadata"]["signature_def"]["signature_def"]


def test_row_and_columnar_formats_give_the_same_answer(dev_server):
    pixels = IMAGES[:2].tolist()
    b64 = [{"b64": base64.b64encode(payloads.encode_image(i)).decode()} for i in IMAGES[:2]]
    bodies = {
        "row": {"instances": pixels},
        "named rows": {"instances": [{"images": p} for p in pixels]},
        "columnar": {"inputs": pixels},
        "named columns": {"inputs": {"images": pixels}},
        "b64 rows": {"signature_name": "serving_bytes", "instances": b64},
        "b64 columns": {"signature_name": "serving_bytes", "inputs": {"image_bytes": b64}},
    }
    answers = {}
    for name, body in bodies.items():
        response = requests.post(predict_path(dev_server, "/versions/1"), json=body, timeout=10)
        assert response.status_code == 200, (name, response.text)
        answers[name] = response.json()
    for name in ("row", "named rows", "b64 rows"):
        rows = answers[name]["predictions"]
        assert len(rows) == 2 and set(rows[0]) == {"scores", "class_ids"}
    reference = np.array([row["scores"] for row in answers["row"]["predictions"]])
    for name in ("columnar", "named columns", "b64 columns"):
        np.testing.assert_allclose(np.array(answers[name]["outputs"]["scores"]), reference, atol=1e-5)


BAD_BODIES = {
    "malformed JSON": (b'{"instances": [1, 2', 400, "JSON Parse error"),
    "not an object": (b"[1, 2, 3]", 400, "Is not object"),
    "empty body": (b"", 400, "empty"),
    "both keys": (json.dumps({"instances": [], "inputs": []}).encode(), 400, "only one of"),
    "neither key": (b'{"signature_name": "serving_default"}', 400, "Missing 'inputs' or 'instances'"),
    "signature name not a string": (b'{"signature_name": 3, "instances": [[1]]}', 400, "must be a string"),
    "unknown signature": (
        b'{"signature_name": "nope", "instances": [[1]]}',
        400,
        'Serving signature name: "nope"',
    ),
    "empty instances": (b'{"instances": []}', 400, "non-empty"),
    "wrong shape": (
        json.dumps({"instances": np.zeros((1, 27, 28)).tolist()}).encode(),
        400,
        "expects [-1, 28, 28]",
    ),
    "wrong rank": (json.dumps({"instances": np.zeros((1, 784)).tolist()}).encode(), 400, "shape"),
    "strings for floats": (
        json.dumps({"instances": [[["x"] * 28] * 28]}).encode(),
        400,
        "not of expected type: float",
    ),
    "booleans for floats": (
        json.dumps({"instances": [[[True] * 28] * 28]}).encode(),
        400,
        "expected type: float",
    ),
    "ragged": (json.dumps({"instances": [[[0] * 28] * 27 + [[0] * 5]]}).encode(), 400, "rectangular"),
    "float32 overflow": (json.dumps({"instances": [[[1e300] * 28] * 28]}).encode(), 400, "loss of precision"),
    "unknown named input": (json.dumps({"inputs": {"pixels": [[0]]}}).encode(), 400, "unknown ['pixels']"),
    "bad base64": (b'{"signature_name": "serving_bytes", "instances": [{"b64": "%%%"}]}', 400, "base64"),
    "not an image": (
        json.dumps(
            {"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(b"GIF?no").decode()}]}
        ).encode(),
        400,
        "Unknown image file format",
    ),
    "number for bytes": (
        b'{"signature_name": "serving_bytes", "instances": [3]}',
        400,
        "expected type: string",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_malformed_predict_requests_get_4xx_in_tf_servings_error_shape(dev_server, case):
    body, status, message = BAD_BODIES[case]
    response = requests.post(predict_path(dev_server), data=body, timeout=10)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()
    assert set(error) == {"error"} and message in error["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", f"/v1/models/{MODEL}:predict", 400),  # predict is POST
        ("POST", f"/v1/models/{MODEL}", 400),  # status is GET
        ("DELETE", f"/v1/models/{MODEL}", 400),
        ("GET", "/v1/models", 400),  # no model name
        ("GET", f"/v1/models/{MODEL}/versions/99999999999999999999", 400),  # not an int64
        ("GET", "/nothing/here", 404),
        ("POST", f"/v1/models/{MODEL}:classify", 400),  # the dev server implements predict only
    ],
)
def test_wrong_methods_and_paths_get_4xx(dev_server, method, path, status):
    response = requests.request(method, dev_server.rest_url + path, data=b'{"instances": [[0]]}', timeout=10)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"THIS IS NOT HTTP\r\n\r\n", 400),
        (
            b"POST /v1/models/fashion_mnist:predict HTTP/1.1\r\nContent-Length: ten\r\nConnection: close\r\n\r\n",
            400,
        ),
        (b"POST /v1/models/fashion_mnist:predict HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413),
        (
            b"POST /v1/models/fashion_mnist:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            411,
        ),
    ],
)
def test_broken_http_gets_4xx_json_and_the_connection_closed(dev_server, request_bytes, status):
    answer = raw_exchange(dev_server.rest_port, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode(), answer[:300]
    assert "error" in json.loads(body)


def test_a_body_over_the_limit_is_refused_before_it_is_read(dev_server):
    body = b'{"instances": [' + b"0," * (1 << 20) + b"0]}"
    response = requests.post(predict_path(dev_server), data=body, timeout=30)
    assert response.status_code == 413
    assert "exceeds the limit of 1048576 bytes" in response.json()["error"]


def test_grpc_rejects_wrong_dtypes_missing_inputs_and_bad_shapes(dev_server):
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{dev_server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    cases = {
        "int32 for float": {"images": np.zeros((1, 28, 28), np.int32)},
        "wrong input name": {"pixels": np.zeros((1, 28, 28), np.float32)},
        "wrong shape": {"images": np.zeros((1, 28, 27), np.float32)},
    }
    for case, inputs in cases.items():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(tensors.make_tensor_proto(array))
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, raised.value.details())
    channel.close()


def test_tensors_in_typed_fields_are_read_like_tensor_content(grpc_client):
    """Other clients fill ``float_val`` instead of ``tensor_content``; both must work."""
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    proto = request.inputs["images"]
    proto.dtype = 1
    for size in (1, 28, 28):
        proto.tensor_shape.dim.add(size=size)
    proto.float_val.extend(IMAGES[0].astype(np.float32).reshape(-1).tolist())
    channel = grpc.insecure_channel(grpc_client.target)
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    channel.close()
    scores = tensors.make_ndarray(response.outputs["scores"])
    np.testing.assert_allclose(scores, grpc_client.predict_images(IMAGES[:1]).scores, atol=1e-6)


def test_a_bad_image_in_a_batch_fails_only_its_own_request(rest):
    good = [payloads.encode_image(i) for i in IMAGES]

    def send(index: int):
        try:
            return rest.predict_image_bytes([b"not an image" if index % 4 == 0 else good[index % 6]])
        except ServingError as error:
            return error

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(64)))
    for index, answer in enumerate(answers):
        if index % 4 == 0:
            assert isinstance(answer, ServingError) and answer.http_status == 400
        else:
            assert not isinstance(answer, ServingError), answer


def scrape(dev_server) -> str:
    response = requests.get(f"{dev_server.rest_url}/monitoring/prometheus/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(r"(\S+?)\{(.*)\} (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match[3])
    return total


def test_metrics_use_tf_servings_names_labels_and_microseconds(dev_server, rest, grpc_client):
    before = scrape(dev_server)
    for _ in range(3):
        rest.predict_images(IMAGES[:1])
    grpc_client.predict_images(IMAGES[:1])
    with pytest.raises(ServingError):
        rest.predict_images(IMAGES[:1], label="nope")
    after = scrape(dev_server)
    count = ":tensorflow:serving:request_count"
    latency = ":tensorflow:serving:request_latency_count"

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta(count, model_name=MODEL, status="OK") == 4
    assert delta(count, model_name=MODEL, status="INVALID_ARGUMENT") == 1
    assert delta(latency, model_name=MODEL, API="predict", entrypoint="REST") == 4
    assert delta(latency, model_name=MODEL, API="predict", entrypoint="GRPC") == 1
    assert "# TYPE :tensorflow:serving:request_latency histogram" in after
    assert re.search(
        r':tensorflow:serving:runtime_latency_bucket\{model_name="fashion_mnist",API="predict",'
        r'runtime="TF2",le="10"\}',
        after,
    )
    # Microseconds: a request takes well over 100 us and well under 100 s.
    total = metric(after, ":tensorflow:serving:request_latency_sum", entrypoint="REST")
    number = metric(after, latency, entrypoint="REST")
    assert 100 < total / number < 1e8


def test_batching_merges_concurrent_requests_into_fewer_model_runs(dev_server, rest):
    runs = ":tensorflow:serving:runtime_latency_count"
    before = metric(scrape(dev_server), runs)
    barrier = threading.Barrier(16)

    def send(_):
        barrier.wait()
        for _ in range(4):
            rest.predict_images(IMAGES[:1])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, range(16)))
    model_runs = metric(scrape(dev_server), runs) - before
    assert model_runs < 64, (
        f"64 concurrent requests ran the model {model_runs:.0f} times: nothing was batched"
    )


@pytest.mark.skipif(
    subprocess.run(["which", "prometheus"], capture_output=True).returncode != 0,
    reason="prometheus (Debian package) is not installed: run `make system-deps`",
)
def test_a_real_prometheus_scrapes_the_tf_serving_metrics(dev_server, rest, tmp_path, free_port):
    from tests.workloads.serving.prometheus import running_prometheus

    rest.predict_images(IMAGES[:1])
    target = f"127.0.0.1:{dev_server.rest_port}"
    with running_prometheus(tmp_path, free_port, target, "/monitoring/prometheus/metrics") as query:
        value = wait_until(
            lambda: query(f'sum(:tensorflow:serving:request_count{{model_name="{MODEL}",status="OK"}})'),
            60,
            "Prometheus to scrape the development server",
        )
        assert value >= 1
        assert query(f'sum(:tensorflow:serving:request_latency_count{{model_name="{MODEL}"}})') >= 1
