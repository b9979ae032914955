"""A generated barrage of bad requests: every one gets a 4xx in TF Serving's error shape, and the
development server is still alive and correct afterwards."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.workloads.conftest import MODEL
from workloads.serving import payloads
from workloads.serving.client import RetryPolicy, make_client

pytestmark = [pytest.mark.xdist_group("dev_server"), pytest.mark.slow]

# JSON values no larger than a few lists of four: they can never form a [N, 28, 28] image batch, and
# random text is never a decodable image, so none of the bodies below is a valid request.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=16,
)
image_shaped_junk = st.sampled_from(["x", True, None, {"b64": "AAAA"}, [1], {}]).map(
    lambda v: [[[v] * 28] * 28]
)
wrong_shapes = st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)).filter(
    lambda s: s[1:] != (28, 28)
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"instances": json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"inputs": json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"signature_name": json_values, "instances": json_values}).map(
        lambda v: json.dumps(v).encode()
    ),
    image_shaped_junk.map(lambda v: json.dumps({"instances": v}).encode()),
    wrong_shapes.map(lambda s: json.dumps({"instances": np.ones(s).tolist()}).encode()),
    st.lists(st.binary(max_size=64), min_size=1, max_size=3).map(
        lambda blobs: json.dumps(
            {
                "signature_name": "serving_bytes",
                "instances": [{"b64": base64.b64encode(b).decode()} for b in blobs],
            }
        ).encode()
    ),
    st.lists(st.text(max_size=12), min_size=1, max_size=3).map(
        lambda texts: json.dumps(
            {"signature_name": "serving_bytes", "instances": [{"b64": t} for t in texts]}
        ).encode()
    ),
)
routes = st.sampled_from(["", "/versions/1", "/versions/2", "/labels/stable", "/labels/canary"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, route=routes)
def test_generated_bad_requests_all_get_4xx_with_an_error_message(dev_server, body, route):
    response = requests.post(f"{dev_server.rest_url}/v1/models/{MODEL}{route}:predict", data=body, timeout=30)
    assert 400 <= response.status_code < 500, (body[:200], response.status_code, response.text[:300])
    error = response.json()
    assert isinstance(error, dict) and set(error) == {"error"} and error["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.text(alphabet="abcxyz0123456789/:._-%", max_size=40),
)
def test_generated_paths_and_methods_get_4xx(dev_server, method, path):
    response = requests.request(method, f"{dev_server.rest_url}/v1/models/{path}", data=b"{}", timeout=30)
    assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text[:300])
    assert "error" in response.json()


def test_the_server_is_alive_and_correct_after_the_barrage(dev_server):
    """Runs after the generated tests in this module (pytest keeps file order)."""
    assert dev_server.alive(), dev_server.log()[-3000:]
    with make_client(dev_server.rest_url, MODEL, retry=RetryPolicy(attempts=1)) as client:
        images = payloads.synthetic_images(3, seed=9)
        answer = client.predict_images(images)
        again = client.predict_image_bytes([payloads.encode_image(i) for i in images])
        np.testing.assert_allclose(answer.scores, again.scores, atol=1e-5)
        assert {s.state for s in client.model_status()} == {"AVAILABLE"}
    assert "Traceback" not in dev_server.log(), "a request raised inside the server"
