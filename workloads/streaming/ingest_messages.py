"""The JSON records of streaming ingestion (topic ``mlstack.ingest.images``; docs/serving.md).

``{"label": 3, "image_b64": "<base64 PNG or JPEG, 28x28, grey or colour>"}`` or
``{"label": 3, "pixels": [[0, 12, ...], ...]}`` (28 x 28 intensities 0-255). Other keys are
ignored. Images are stored as they are: ingestion never resizes, so the shards hold exactly what the
producer sent (resize at the source, the same way for training and serving).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any

import numpy as np

from workloads.streaming.inference_messages import PoisonMessage, parse_json_object

IMAGE_SHAPE = (28, 28)


def parse_record(value: bytes | None, num_classes: int, max_bytes: int) -> tuple[np.ndarray, int]:
    """(uint8 [28, 28] image, label) or :class:`PoisonMessage` saying why the record is unusable."""
    document = parse_json_object(value, max_bytes, "invalid_record")
    label = document.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
        raise PoisonMessage("invalid_record", f"label must be an integer 0..{num_classes - 1}, got {label!r}")
    if ("image_b64" in document) == ("pixels" in document):
        raise PoisonMessage(
            "invalid_record", "give exactly one of image_b64 (encoded image) or pixels (28x28)"
        )
    image = _decode(document["image_b64"]) if "image_b64" in document else _pixels(document["pixels"])
    return image, label


def _decode(encoded: Any) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not isinstance(encoded, str):
        raise PoisonMessage("invalid_record", "image_b64 must be a base64 string")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise PoisonMessage("invalid_record", "image_b64 is not valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in {"PNG", "JPEG"}:
                raise PoisonMessage("bad_image", f"image_b64 is a {image.format} image; send PNG or JPEG")
            grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise PoisonMessage("bad_image", f"image_b64 is not a readable PNG or JPEG ({error})") from None
    if grey.shape != IMAGE_SHAPE:
        raise PoisonMessage(
            "bad_image",
            f"the image is {grey.shape[1]}x{grey.shape[0]}; ingestion stores 28x28 images as sent",
        )
    return grey


def _pixels(values: Any) -> np.ndarray:
    try:
        pixels = np.asarray(values)
    except (TypeError, ValueError):
        raise PoisonMessage("invalid_record", "pixels must be a 28x28 array of integers") from None
    if pixels.shape != IMAGE_SHAPE or pixels.dtype.kind not in "iu":
        raise PoisonMessage(
            "invalid_record", f"pixels must be 28x28 integers, got shape {list(pixels.shape)}"
        )
    if pixels.min() < 0 or pixels.max() > 255:
        raise PoisonMessage("invalid_record", "pixels must be intensities between 0 and 255")
    return pixels.astype(np.uint8)


def record_message(label: int, *, pixels: Any = None, image: bytes | None = None) -> bytes:
    """A record as producers write it (the tests, the benchmark and the demo use this)."""
    body: dict[str, Any] = {"label": int(label)}
    if image is not None:
        body["image_b64"] = base64.b64encode(image).decode("ascii")
    else:
        body["pixels"] = np.asarray(pixels).astype(int).tolist()
    return json.dumps(body).encode()
