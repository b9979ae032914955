"""One loaded SavedModel version for the development server: its signatures and how to run them.

Signatures are read from ``saved_model.pb`` itself (the ``serve`` meta graph), exactly the
``SignatureDef`` map TF Serving reports as metadata and validates requests against; running goes
through ``tf.saved_model.load(...).signatures``. TensorFlow is imported when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from workloads.serving import tensors
from workloads.serving.codes import Code, ServingStatus, invalid_argument

SERVE_TAG = "serve"
INIT_OP_SIGNATURE = "__saved_model_init_op"
WARMUP_FILE = pathlib.Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """An input or output of a signature: dtype and shape (``None`` = any size; ``shape=None`` = any rank)."""

    dtype: tensors.DType
    shape: tuple[int | None, ...] | None

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.dtype.name} of any shape"
        return f"{self.dtype.name} {_shape_text(self.shape)}"


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    method_name: str


class LoadedModel:
    """A SavedModel version in memory. Immutable once loaded, so requests may share it freely."""

    def __init__(self, name: str, version: int, path: str, signature_defs: Any, runner: Any) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs  # protobuf map: signature name -> SignatureDef
        self.signatures = {
            key: _signature(key, value) for key, value in signature_defs.items() if key != INIT_OP_SIGNATURE
        }
        self._runner = runner

    def signature(self, name: str) -> Signature:
        try:
            return self.signatures[name or "serving_default"]
        except KeyError:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def') from None

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs one signature; TensorFlow's own errors keep their canonical code (bad image -> 400)."""
        import tensorflow as tf

        function = self._runner.signatures[signature.name]
        try:
            feeds = {
                name: tf.constant(array, dtype=tf.dtypes.as_dtype(signature.inputs[name].dtype.numpy))
                if signature.inputs[name].dtype.numpy is not np.object_
                else tf.constant(array, dtype=tf.string)
                for name, array in inputs.items()
            }
            results = function(**feeds)
        except tf.errors.OpError as error:
            raise ServingStatus(Code(error.error_code), tf_error_reason(error.message)) from None
        except (TypeError, ValueError) as error:
            raise invalid_argument(f"signature {signature.name} rejected the inputs: {error}") from None
        return {name: value.numpy() for name, value in results.items()}


def tf_error_reason(message: str) -> str:
    """The sentence of a TensorFlow error that says what was wrong, without graph and node noise."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[{{node")
    for line in message.splitlines():
        line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line).strip()
        line = re.sub(r"\s*\[Op:[^\]]*\]$", "", line)
        if line and not line.startswith(noise):
            return line
    return message.strip() or "TensorFlow rejected the request"


def read_signature_defs(path: str | pathlib.Path):
    """The ``SignatureDef`` map of the ``serve`` meta graph in ``path/saved_model.pb``."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((pathlib.Path(path) / "saved_model.pb").read_bytes())
    except DecodeError as error:
        raise ValueError(
            f"{path}/saved_model.pb is not a SavedModel ({error}); re-export this version"
        ) from None
    for meta_graph in proto.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph.signature_def
    raise ValueError(f"{path}/saved_model.pb has no meta graph tagged '{SERVE_TAG}'")


def load(name: str, version: int, path: str | pathlib.Path, *, warmup: bool = True) -> LoadedModel:
    """Loads a SavedModel directory; raises with TensorFlow's reason when it is incomplete or corrupt.

    With ``warmup``, the requests in ``assets.extra/tf_serving_warmup_requests`` are run first, as TF
    Serving does (``--enable_model_warmup``): a version whose warmup fails does not load.
    """
    import tensorflow as tf

    signature_defs = read_signature_defs(path)
    runner = tf.saved_model.load(str(path), tags=[SERVE_TAG])
    model = LoadedModel(name, version, str(path), signature_defs, runner)
    if warmup:
        run_warmup(model, pathlib.Path(path) / WARMUP_FILE)
    return model


def run_warmup(model: LoadedModel, warmup_file: pathlib.Path) -> int:
    """Replays the ``PredictionLog`` records of a TF Serving warmup file; returns how many ran."""
    if not warmup_file.exists():
        return 0
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    for raw in tf.data.TFRecordDataset(str(warmup_file)).take(MAX_WARMUP_RECORDS):
        record = prediction_log_pb2.PredictionLog()
        record.ParseFromString(raw.numpy())
        if record.WhichOneof("log_type") != "predict_log":
            raise ValueError(
                f"{warmup_file}: record {count} is not a predict request; only predict is served"
            )
        request = record.predict_log.request
        signature = model.signature(request.model_spec.signature_name)
        inputs = {key: tensors.make_ndarray(proto) for key, proto in request.inputs.items()}
        try:
            model.run(signature, inputs)
        except ServingStatus as status:
            raise ValueError(f"{warmup_file}: warmup request {count} failed: {status}") from None
        count += 1
    return count


def _tensor_spec(info: Any) -> TensorSpec:
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(d.size if d.size >= 0 else None for d in shape.dim)
    return TensorSpec(tensors.dtype_for_enum(info.dtype), dims)


def _signature(name: str, definition: Any) -> Signature:
    return Signature(
        name=name,
        inputs={key: _tensor_spec(info) for key, info in definition.inputs.items()},
        outputs={key: _tensor_spec(info) for key, info in definition.outputs.items()},
        method_name=definition.method_name,
    )


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def check_shape(signature: Signature, input_name: str, array: np.ndarray) -> None:
    """Rejects an input whose rank or fixed dimensions differ from the signature's."""
    expected = signature.inputs[input_name].shape
    if expected is None:
        return
    if len(expected) != array.ndim or any(
        e is not None and e != a for e, a in zip(expected, array.shape, strict=True)
    ):
        raise invalid_argument(
            f"input '{input_name}' has shape {_shape_text(array.shape)} but signature '{signature.name}' "
            f"expects {_shape_text(expected)} ({signature.inputs[input_name].describe()})"
        )
