"""NumPy arrays <-> TensorFlow ``TensorProto`` for the gRPC API, without running TensorFlow.

The gRPC client and the development server's gRPC service both go through these two functions, so
what one writes the other reads. The proto classes come from the ``tensorflow`` package (which
``tensorflow-serving-api`` depends on), imported when first used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class DType:
    """One TensorFlow dtype: its ``DataType`` enum value, NumPy type and ``TensorProto`` value field."""

    enum: int
    name: str  # TF's short name, as in error messages ("float", "string")
    numpy: Any
    field: str


DTYPES: tuple[DType, ...] = (
    DType(1, "float", np.float32, "float_val"),
    DType(2, "double", np.float64, "double_val"),
    DType(3, "int32", np.int32, "int_val"),
    DType(4, "uint8", np.uint8, "int_val"),
    DType(5, "int16", np.int16, "int_val"),
    DType(6, "int8", np.int8, "int_val"),
    DType(7, "string", np.object_, "string_val"),
    DType(9, "int64", np.int64, "int64_val"),
    DType(10, "bool", np.bool_, "bool_val"),
    DType(17, "uint16", np.uint16, "int_val"),
    DType(22, "uint32", np.uint32, "uint32_val"),
    DType(23, "uint64", np.uint64, "uint64_val"),
)
BY_ENUM = {d.enum: d for d in DTYPES}
_BY_NUMPY = {np.dtype(d.numpy): d for d in DTYPES if d.numpy is not np.object_}


class TensorConversionError(ValueError):
    """The tensor cannot be converted; the message says why, naming dtype and shape."""


def dtype_for_enum(enum: int) -> DType:
    try:
        return BY_ENUM[enum]
    except KeyError:
        raise TensorConversionError(f"unsupported tensor dtype enum {enum}") from None


def dtype_for_array(array: np.ndarray) -> DType:
    if array.dtype.kind in "OSU":
        return BY_ENUM[7]
    try:
        return _BY_NUMPY[array.dtype]
    except KeyError:
        raise TensorConversionError(f"unsupported NumPy dtype {array.dtype}") from None


def to_string_array(values: Any) -> np.ndarray:
    """An object array of ``bytes`` (TF's string tensor) from str/bytes values of any nesting."""
    array = np.asarray(values, dtype=object)
    flat = [v.encode() if isinstance(v, str) else bytes(v) for v in array.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def make_tensor_proto(array: np.ndarray):
    """A ``TensorProto``: numeric data as ``tensor_content`` bytes, strings as ``string_val``."""
    from tensorflow.core.framework import tensor_pb2

    array = np.asarray(array)
    dtype = dtype_for_array(array)
    proto = tensor_pb2.TensorProto(dtype=dtype.enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if dtype.numpy is np.object_:
        proto.string_val.extend(to_string_array(array).reshape(-1).tolist())
    else:
        proto.tensor_content = np.ascontiguousarray(
            array, dtype=np.dtype(dtype.numpy).newbyteorder("<")
        ).tobytes()
    return proto


def make_ndarray(proto) -> np.ndarray:
    """Reads a ``TensorProto`` written by any TF Serving client: ``tensor_content`` or typed fields."""
    dtype = dtype_for_enum(proto.dtype)
    if proto.tensor_shape.unknown_rank:
        raise TensorConversionError("tensor has unknown rank; send a concrete shape")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(size < 0 for size in shape):
        raise TensorConversionError(f"tensor shape {list(shape)} has a negative dimension")
    count = int(np.prod(shape, dtype=np.int64))
    if dtype.numpy is np.object_:
        values = list(proto.string_val)
        flat = np.empty(len(values), dtype=object)
        flat[:] = values
    elif proto.tensor_content:
        item = np.dtype(dtype.numpy).newbyteorder("<")
        if len(proto.tensor_content) != count * item.itemsize:
            raise TensorConversionError(
                f"tensor_content holds {len(proto.tensor_content)} bytes; shape {list(shape)} of "
                f"{dtype.name} needs {count * item.itemsize}"
            )
        return np.frombuffer(proto.tensor_content, dtype=item).astype(dtype.numpy).reshape(shape)
    else:
        flat = np.asarray(getattr(proto, dtype.field), dtype=dtype.numpy)
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size == 1 and count > 0:  # TensorFlow's rule: a single value fills the whole tensor
        return np.full(shape, flat[0], dtype=flat.dtype)
    if count == 0 and flat.size == 0:
        return flat.reshape(shape)
    raise TensorConversionError(f"tensor of shape {list(shape)} needs {count} values, got {flat.size}")
