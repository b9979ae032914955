"""serve-dev replays TF Serving's warmup requests before a version serves, and refuses a version
whose warmup fails, as TF Serving does (``--enable_model_warmup``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.workloads.conftest import MODEL
from workloads.serving import payloads, tensors
from workloads.serving.dev import savedmodel


def write_warmup(directory, requests: list[tuple[str, dict[str, np.ndarray]]]) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = directory / savedmodel.WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = MODEL, signature
            for name, array in inputs.items():
                request.inputs[name].CopyFrom(tensors.make_tensor_proto(array))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def test_warmup_requests_run_before_the_version_serves(model_base, tmp_path):
    version = tmp_path / "1"
    shutil.copytree(model_base / "1", version)
    images = payloads.synthetic_images(2)
    write_warmup(
        version,
        [
            ("serving_default", {"images": images.astype(np.float32)}),
            (
                "serving_bytes",
                {"image_bytes": tensors.to_string_array([payloads.encode_image(i) for i in images])},
            ),
        ],
    )
    model = savedmodel.load(MODEL, 1, version)
    assert savedmodel.run_warmup(model, version / savedmodel.WARMUP_FILE) == 2


def test_a_version_whose_warmup_fails_does_not_load(model_base, tmp_path):
    version = tmp_path / "1"
    shutil.copytree(model_base / "1", version)
    write_warmup(version, [("serving_bytes", {"image_bytes": tensors.to_string_array([b"not an image"])})])
    with pytest.raises(
        ValueError, match="warmup request 0 failed: INVALID_ARGUMENT: Unknown image file format"
    ):
        savedmodel.load(MODEL, 1, version)
    assert savedmodel.load(MODEL, 1, version, warmup=False).version == 1
