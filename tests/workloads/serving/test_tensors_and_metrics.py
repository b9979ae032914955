"""TensorProto conversion agrees with TensorFlow's own; TF Serving's metric exposition format."""

from __future__ import annotations

import numpy as np
import pytest

from workloads.serving import tensors
from workloads.serving.codes import Code
from workloads.serving.dev.metrics import BUCKET_LIMITS, TfServingMetrics
from workloads.serving.tensors import TensorConversionError

ARRAYS = {
    "float32": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "float64": np.array([1e-300, -2.5]),
    "int32": np.array([[-(2**31)], [2**31 - 1]], dtype=np.int32),
    "int64": np.array([2**62, -1], dtype=np.int64),
    "uint8": np.array([0, 255], dtype=np.uint8),
    "bool": np.array([True, False]),
    "bytes": np.array([b"\x00png", b""], dtype=object),
    "empty": np.zeros((0, 28, 28), dtype=np.float32),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_our_tensor_protos_read_back_and_match_tensorflows(name):
    import tensorflow as tf

    array = ARRAYS[name]
    ours = tensors.make_tensor_proto(array)
    np.testing.assert_array_equal(tf.make_ndarray(ours), array)
    theirs = tf.make_tensor_proto(array)
    back = tensors.make_ndarray(theirs)
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_typed_fields_and_tensorflows_single_value_fill_are_read():
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=1)
    proto.tensor_shape.dim.add(size=3)
    proto.float_val.append(2.5)
    np.testing.assert_array_equal(tensors.make_ndarray(proto), [2.5, 2.5, 2.5])
    proto.float_val.extend([1.0])
    with pytest.raises(TensorConversionError, match="needs 3 values, got 2"):
        tensors.make_ndarray(proto)


def test_truncated_tensor_content_is_an_error_not_garbage():
    proto = tensors.make_tensor_proto(np.ones((2, 2), dtype=np.float32))
    proto.tensor_content = proto.tensor_content[:-1]
    with pytest.raises(TensorConversionError, match="holds 15 bytes"):
        tensors.make_ndarray(proto)


def test_metrics_page_has_tf_servings_names_buckets_and_cumulative_counts():
    metrics = TfServingMetrics()
    metrics.record_request("m", Code.OK, "predict", "REST", 5.0)
    metrics.record_request("m", Code.OK, "predict", "REST", 30.0)
    metrics.record_request("m", Code.INVALID_ARGUMENT, "predict", "GRPC", 1e12)
    metrics.record_runtime('we"ird', "predict", 12.0)
    page = metrics.render().splitlines()
    assert page[0] == "# TYPE :tensorflow:serving:request_count counter"
    assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 2' in page
    assert ':tensorflow:serving:request_count{model_name="m",status="INVALID_ARGUMENT"} 1' in page
    rest = [line for line in page if 'entrypoint="REST"' in line]
    assert (
        rest[0]
        == ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="REST",le="10"} 1'
    )
    assert rest[1].endswith('le="18"} 1') and rest[2].endswith('le="32.4"} 2')
    assert rest[len(BUCKET_LIMITS)].endswith('le="+Inf"} 2')
    assert (
        ':tensorflow:serving:request_latency_sum{model_name="m",API="predict",entrypoint="REST"} 35.0' in page
    )
    grpc_inf = ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="GRPC",le="+Inf"} 1'
    assert grpc_inf in page
    assert any(
        line.startswith(':tensorflow:serving:runtime_latency_count{model_name="we\\"ird"') for line in page
    )
    assert len(BUCKET_LIMITS) == 33 and BUCKET_LIMITS[0] == 10 and BUCKET_LIMITS[1] == 18
