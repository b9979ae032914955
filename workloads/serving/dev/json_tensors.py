"""TF Serving's JSON predict format: request bodies -> NumPy inputs, outputs -> response bodies.

Follows TF Serving's REST API rules (``tensorflow_serving/util/json_tensor.cc``):

- a body is a JSON object with an optional ``signature_name`` and exactly one of ``instances``
  (row format: one entry per example, an object of named inputs or, for a one-input signature, the
  bare value) or ``inputs`` (columnar format: an object of named batched tensors, or the bare tensor);
- numbers are coerced to the signature's dtype only when that loses nothing (``1`` is a fine float,
  ``1.5`` is not an int, ``true`` is not a number, ``"3"`` is not a number);
- string tensors take JSON strings or ``{"b64": "<base64>"}`` objects for binary data;
- answers are ``{"predictions": [...]}`` (row) or ``{"outputs": ...}`` (columnar); string outputs
  whose name ends in ``_bytes`` come back as ``{"b64": ...}``.

Every problem is an ``INVALID_ARGUMENT`` naming the input and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from workloads.serving.codes import invalid_argument
from workloads.serving.dev.savedmodel import Signature, TensorSpec, check_shape

Format = Literal["row", "columnar"]
MAX_RANK = 32  # deeper nesting than any model input is an error, not a recursion


@dataclasses.dataclass(frozen=True)
class PredictRequest:
    signature_name: str
    format: Format
    body: Any  # the "instances" or "inputs" value, converted once the signature is known


def parse_body(raw: bytes) -> PredictRequest:
    """Parses the JSON and the request's envelope; the tensors are converted in :func:`to_inputs`."""
    if not raw:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise invalid_argument(f"JSON Parse error: invalid UTF-8 at offset: {error.start}") from None
    except json.JSONDecodeError as error:
        raise invalid_argument(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: the document nests too deeply") from None
    if not isinstance(document, dict):
        raise invalid_argument(f"JSON Value: {_preview(document)} Is not object")
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument(
            f"JSON Value: {_preview(document)} not formatted correctly. 'signature_name' key must be a string value."
        )
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise invalid_argument(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    if not (has_instances or has_inputs):
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    if has_instances:
        return PredictRequest(signature_name, "row", document["instances"])
    return PredictRequest(signature_name, "columnar", document["inputs"])


def to_inputs(request: PredictRequest, signature: Signature) -> dict[str, np.ndarray]:
    """The request's tensors, converted to the signature's dtypes and checked against its shapes."""
    if request.format == "row":
        named = _rows_to_columns(request.body, signature)
    else:
        named = _columns(request.body, signature)
    inputs = {name: to_array(value, signature.inputs[name], name) for name, value in named.items()}
    for name, array in inputs.items():
        check_shape(signature, name, array)
    if request.format == "row":
        sizes = {name: a.shape[0] for name, a in inputs.items() if a.ndim}
        if len(set(sizes.values())) > 1:
            raise invalid_argument(f"inputs disagree on the number of instances: {sizes}")
    return inputs


def _rows_to_columns(instances: Any, signature: Signature) -> dict[str, list[Any]]:
    if not isinstance(instances, list) or not instances:
        raise invalid_argument("'instances' must be a non-empty JSON array (one entry per example)")
    names = sorted(signature.inputs)
    first = instances[0]
    if isinstance(first, dict) and not _is_b64(first):
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict) or _is_b64(instance):
                raise invalid_argument(
                    f"instance {index}: expected an object of named inputs {names} like instance 0, "
                    f"got {_preview(instance)}"
                )
            _check_names(set(instance), names, f"instance {index}")
            for name in names:
                columns[name].append(instance[name])
        return columns
    if len(names) != 1:
        raise invalid_argument(
            f"instances is a plain list, but expecting list of objects as multiple input tensors required "
            f"as per tensorinfo_map: {names}"
        )
    return {names[0]: instances}


def _columns(inputs: Any, signature: Signature) -> dict[str, Any]:
    names = sorted(signature.inputs)
    if isinstance(inputs, dict) and not _is_b64(inputs):
        _check_names(set(inputs), names, "'inputs'")
        return dict(inputs)
    if len(names) != 1:
        raise invalid_argument(
            f"'inputs' is a bare tensor, but signature '{signature.name}' takes inputs {names}"
        )
    return {names[0]: inputs}


def _check_names(given: set[str], expected: list[str], where: str) -> None:
    missing, extra = sorted(set(expected) - given), sorted(given - set(expected))
    if missing or extra:
        problems = [f"missing {missing}" if missing else "", f"unknown {extra}" if extra else ""]
        raise invalid_argument(
            f"{where}: inputs must be exactly {expected}; {', '.join(p for p in problems if p)}"
        )


def to_array(value: Any, spec: TensorSpec, name: str) -> np.ndarray:
    """One JSON tensor (any nesting of lists) -> a dense array of ``spec``'s dtype, or INVALID_ARGUMENT."""
    if spec.dtype.name == "string":
        return _string_array(value, name)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise invalid_argument(
            f"input '{name}': the nested lists are not rectangular (all lists at one level must have the same "
            "length) or mix numbers with other values"
        ) from None
    if array.ndim > MAX_RANK:
        raise invalid_argument(
            f"input '{name}': {array.ndim} levels of nesting; at most {MAX_RANK} are allowed"
        )
    target = np.dtype(spec.dtype.numpy)
    kind = array.dtype.kind
    accepted = {"b": "b", "f": "iuf", "i": "iu", "u": "iu"}[target.kind]
    if array.size and kind not in accepted:
        raise _type_error(name, array, spec)
    if array.size == 0:
        return array.astype(target)
    if target.kind == "f":
        with np.errstate(over="ignore"):  # out-of-range values become inf; reported just below
            converted = array.astype(target)
        if not np.all(np.isfinite(converted) | ~np.isfinite(array.astype(np.float64))):
            raise invalid_argument(
                f"input '{name}': Cannot convert JSON value to {spec.dtype.name} without loss of precision "
                "(a value is out of its range)"
            )
        return converted
    if target.kind in "iu":
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise invalid_argument(
                f"input '{name}': a value is outside the range of {spec.dtype.name} [{info.min}, {info.max}]"
            )
    return array.astype(target)


def _string_array(value: Any, name: str) -> np.ndarray:
    """Strings and ``{"b64": ...}`` objects at the leaves, as an object array of bytes."""
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        if len(shape) > MAX_RANK:
            raise invalid_argument(f"input '{name}': more than {MAX_RANK} levels of nesting")
        if not probe:
            break
        probe = probe[0]
    flat: list[bytes] = []

    def walk(node: Any, level: int) -> None:
        if level < len(shape):
            if not isinstance(node, list) or len(node) != shape[level]:
                raise invalid_argument(
                    f"input '{name}': Encountered list at unexpected size or depth at level {level}; expected "
                    f"a list of {shape[level]}"
                )
            for item in node:
                walk(item, level + 1)
            return
        flat.append(_leaf_bytes(node, name))

    walk(value, 0)
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(shape)


def _leaf_bytes(node: Any, name: str) -> bytes:
    if isinstance(node, str):
        return node.encode("utf-8")
    if _is_b64(node):
        try:
            return base64.b64decode(node["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise invalid_argument(f"input '{name}': Unable to base64 decode {_preview(node)}") from None
    if isinstance(node, dict):
        raise invalid_argument(
            f"input '{name}': JSON Value: {_preview(node)} not formatted correctly for base64 data"
        )
    raise invalid_argument(
        f"input '{name}': JSON Value: {_preview(node)} Type: {_json_type(node)} is not of expected type: string"
    )


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _type_error(name: str, array: np.ndarray, spec: TensorSpec):
    sample = next(
        (v for v in array.reshape(-1).tolist() if not _fits(v, spec)), array.reshape(-1)[:1].tolist()
    )
    return invalid_argument(
        f"input '{name}': JSON Value: {_preview(sample)} Type: {_json_type(sample)} is not of expected type: "
        f"{spec.dtype.name}"
    )


def _fits(value: Any, spec: TensorSpec) -> bool:
    kind = np.dtype(spec.dtype.numpy).kind
    if kind == "b":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return kind == "f" or isinstance(value, int)


def _json_type(value: Any) -> str:
    for kind, label in (
        (bool, "Bool"),
        (int | float, "Number"),
        (str, "String"),
        (list, "Array"),
        (dict, "Object"),
    ):
        if isinstance(value, kind):
            return label
    return "Null"


def _preview(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Responses.
def render_outputs(outputs: dict[str, np.ndarray], request_format: Format) -> dict[str, Any]:
    """TF Serving's answer body for ``outputs`` in the request's format."""
    encoded = {name: _encode(name, array) for name, array in outputs.items()}
    if request_format == "columnar":
        return {"outputs": next(iter(encoded.values())) if len(encoded) == 1 else encoded}
    sizes = {name: array.shape[0] if array.ndim else None for name, array in outputs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise invalid_argument(
            f"outputs have different batch sizes {sizes}; ask for the columnar format ('inputs') instead"
        )
    if len(encoded) == 1:
        return {"predictions": next(iter(encoded.values()))}
    count = next(iter(sizes.values()))
    return {"predictions": [{name: rows[i] for name, rows in encoded.items()} for i in range(count)]}


def _encode(name: str, array: np.ndarray) -> Any:
    if array.dtype == np.float32:  # shortest text that reads back as the same float32, as TF Serving writes
        return np.asarray([float(str(v)) for v in array.reshape(-1)]).reshape(array.shape).tolist()
    if array.dtype.kind not in "OS":
        return array.tolist()
    as_b64 = name.endswith("_bytes")
    encode: Callable[[bytes], Any] = (
        (lambda b: {"b64": base64.b64encode(b).decode("ascii")}) if as_b64 else _text
    )
    return np.vectorize(encode, otypes=[object])(array).tolist() if array.size else array.tolist()


def _text(value: bytes) -> Any:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}
