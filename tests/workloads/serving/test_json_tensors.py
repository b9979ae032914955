"""TF Serving's JSON request and response rules, without a server."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from workloads.serving import tensors
from workloads.serving.codes import Code, ServingStatus
from workloads.serving.dev import json_tensors
from workloads.serving.dev.savedmodel import Signature, TensorSpec

FLOAT, INT64, STRING, BOOL, UINT8 = (tensors.BY_ENUM[e] for e in (1, 9, 7, 10, 4))
IMAGES = Signature(
    "serving_default", {"images": TensorSpec(FLOAT, (None, 2, 2))}, {}, "tensorflow/serving/predict"
)
BYTES = Signature(
    "serving_bytes", {"image_bytes": TensorSpec(STRING, (None,))}, {}, "tensorflow/serving/predict"
)
TWO = Signature(
    "two",
    {"a": TensorSpec(INT64, (None,)), "b": TensorSpec(BOOL, (None, 2))},
    {},
    "tensorflow/serving/predict",
)


def inputs(body: dict, signature: Signature) -> dict[str, np.ndarray]:
    return json_tensors.to_inputs(json_tensors.parse_body(json.dumps(body).encode()), signature)


def test_row_and_columnar_bodies_give_the_same_tensor():
    pixels = [[[0, 1], [2, 3]], [[4, 5], [6, 7.5]]]
    expected = np.array(pixels, dtype=np.float32)
    for body in ({"instances": pixels}, {"inputs": pixels}, {"inputs": {"images": pixels}}):
        result = inputs(body, IMAGES)["images"]
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result, expected)
    named = inputs({"instances": [{"images": p} for p in pixels]}, IMAGES)["images"]
    np.testing.assert_array_equal(named, expected)


def test_several_inputs_need_named_instances_of_the_same_count():
    result = inputs({"instances": [{"a": 1, "b": [True, False]}, {"a": 2, "b": [False, False]}]}, TWO)
    assert result["a"].dtype == np.int64 and result["b"].shape == (2, 2)
    with pytest.raises(ServingStatus, match="plain list"):
        inputs({"instances": [1, 2]}, TWO)
    with pytest.raises(ServingStatus, match="missing \\['b'\\]"):
        inputs({"instances": [{"a": 1}]}, TWO)
    # Columnar inputs may differ in dimension 0 (TF Serving allows it; batching does not).
    assert inputs({"inputs": {"a": [1, 2, 3], "b": [[True, True]]}}, TWO)["a"].shape == (3,)


def test_b64_objects_and_plain_strings_fill_string_tensors():
    blob = bytes(range(256))
    result = inputs({"instances": [{"b64": base64.b64encode(blob).decode()}, "text"]}, BYTES)["image_bytes"]
    assert result.tolist() == [blob, b"text"]


@pytest.mark.parametrize(
    ("value", "spec", "message"),
    [
        ([1.5], TensorSpec(INT64, (None,)), "expected type: int64"),
        ([True], TensorSpec(FLOAT, (None,)), "expected type: float"),
        (["1"], TensorSpec(FLOAT, (None,)), 'JSON Value: "1" Type: String'),
        ([None], TensorSpec(FLOAT, (None,)), "Null"),
        ([1], TensorSpec(BOOL, (None,)), "expected type: bool"),
        ([256], TensorSpec(UINT8, (None,)), "outside the range of uint8"),
        ([1e39], TensorSpec(FLOAT, (None,)), "loss of precision"),
        ([[1, 2], [3]], TensorSpec(FLOAT, None), "rectangular"),
        ([{"b64": "%%"}], TensorSpec(STRING, (None,)), "Unable to base64 decode"),
        ([{"b64": "AA==", "x": 1}], TensorSpec(STRING, (None,)), "not formatted correctly for base64"),
        ([["a"], "b"], TensorSpec(STRING, None), "unexpected size or depth"),
    ],
)
def test_values_that_would_change_meaning_are_rejected(value, spec, message):
    with pytest.raises(ServingStatus) as raised:
        json_tensors.to_array(value, spec, "x")
    assert raised.value.code == Code.INVALID_ARGUMENT and message in raised.value.message


def test_integers_are_exact_floats_and_keep_their_value():
    np.testing.assert_array_equal(
        json_tensors.to_array([0, 255, -3], TensorSpec(FLOAT, (None,)), "x"), [0, 255, -3]
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"instances": [1,]}', "JSON Parse error"),
        (b"[" * 100_000, "JSON Parse error"),
        (b"3", "Is not object"),
        (b'{"instances": [], "inputs": []}', "only one of"),
        (b"{}", "Missing 'inputs' or 'instances' key"),
    ],
)
def test_bodies_that_are_not_requests_are_invalid_arguments(raw, message):
    with pytest.raises(ServingStatus) as raised:
        json_tensors.parse_body(raw)
    assert raised.value.code == Code.INVALID_ARGUMENT and message in raised.value.message


def test_answers_follow_the_request_format_and_encode_bytes_outputs():
    outputs = {
        "scores": np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32),
        "class_ids": np.array([1, 0]),
        "thumb_bytes": np.array([b"\x00\xff", b"ok"], dtype=object),
    }
    row = json_tensors.render_outputs(outputs, "row")
    assert row["predictions"][0] == {"scores": [0.1, 0.9], "class_ids": 1, "thumb_bytes": {"b64": "AP8="}}
    columnar = json_tensors.render_outputs(outputs, "columnar")
    assert columnar["outputs"]["class_ids"] == [1, 0] and columnar["outputs"]["thumb_bytes"][1] == {
        "b64": "b2s="
    }
    single = json_tensors.render_outputs({"y": np.array([1.5, 2.5], dtype=np.float32)}, "columnar")
    assert single == {"outputs": [1.5, 2.5]}
