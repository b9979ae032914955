"""The JSON messages of event-driven inference (documented in docs/serving.md).

Request (topic ``mlstack.inference.requests``, key = request id):
  ``{"request_id": "r-1", "image_b64": "<base64 PNG or JPEG>"}``  -> signature ``serving_bytes``
  ``{"request_id": "r-1", "pixels": [[0, 12, ...], ...]}``        -> ``serving_default`` (28x28, 0-255)
  Other keys are ignored, so producers may add their own (trace ids, reply hints).

Result (``mlstack.inference.results``, key = request id):
  ``{"request_id", "model_name", "model_version", "class_id", "scores": [10 floats], "signature",
  "processed_at"}``. Delivery is at least once: a result may repeat; deduplicate on request_id.

Dead letter (``mlstack.inference.dlq``, key = the request's key):
  ``{"reason", "category", "request_id" (or null), "source": {"topic", "partition", "offset"},
  "original_b64", "failed_at"}``; ``original_b64`` is the request exactly as received, so it can be
  fixed and replayed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
from typing import Any

import numpy as np

from workloads.serving.client import BYTES_SIGNATURE, DEFAULT_SIGNATURE

MAX_REQUEST_ID_LENGTH = 200


class PoisonMessage(Exception):
    """A message that can never succeed. ``category`` is a short metric label, ``reason`` the detail."""

    def __init__(self, category: str, reason: str) -> None:
        super().__init__(reason)
        self.category = category
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class InferenceRequest:
    request_id: str
    signature: str
    pixels: np.ndarray | None = None  # [28, 28] float32 for serving_default
    image: bytes | None = None  # encoded image for serving_bytes


def parse_json_object(value: bytes | None, max_bytes: int, invalid_reason: str) -> dict[str, Any]:
    """The message as a JSON object, or :class:`PoisonMessage` (``invalid_reason`` when it is no object)."""
    if value is None:
        raise PoisonMessage(invalid_reason, "the message has no value")
    if len(value) > max_bytes:
        raise PoisonMessage("too_large", f"the message is {len(value)} bytes; the limit is {max_bytes}")
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise PoisonMessage("invalid_json", f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise PoisonMessage(invalid_reason, "the message must be a JSON object")
    return document


def parse_request(value: bytes | None, max_bytes: int) -> InferenceRequest:
    """Validates everything that can be checked without the model; raises :class:`PoisonMessage`."""
    document = parse_json_object(value, max_bytes, "invalid_request")
    request_id = document.get("request_id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
        raise PoisonMessage(
            "invalid_request",
            f"request_id must be a non-empty string of at most {MAX_REQUEST_ID_LENGTH} characters",
        )
    has_image, has_pixels = "image_b64" in document, "pixels" in document
    if has_image == has_pixels:
        raise PoisonMessage(
            "invalid_request", "give exactly one of image_b64 (encoded image) or pixels (28x28)"
        )
    if has_image:
        encoded = document["image_b64"]
        if not isinstance(encoded, str):
            raise PoisonMessage("invalid_request", "image_b64 must be a base64 string")
        try:
            image = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise PoisonMessage("invalid_request", "image_b64 is not valid base64") from None
        if not image:
            raise PoisonMessage("invalid_request", "image_b64 is empty")
        return InferenceRequest(request_id, BYTES_SIGNATURE, image=image)
    try:
        pixels = np.asarray(document["pixels"], dtype=np.float32)
    except (TypeError, ValueError):
        raise PoisonMessage("invalid_request", "pixels must be a 28x28 array of numbers") from None
    if pixels.shape != (28, 28):
        raise PoisonMessage("invalid_request", f"pixels must be 28x28, got shape {list(pixels.shape)}")
    if not np.all(np.isfinite(pixels)) or pixels.min() < 0 or pixels.max() > 255:
        raise PoisonMessage("invalid_request", "pixels must be intensities between 0 and 255")
    return InferenceRequest(request_id, DEFAULT_SIGNATURE, pixels=pixels)


def result_message(
    request: InferenceRequest, model_name: str, model_version: int, scores: np.ndarray, class_id: int
) -> bytes:
    return json.dumps(
        {
            "request_id": request.request_id,
            "model_name": model_name,
            "model_version": model_version,
            "class_id": int(class_id),
            "scores": [round(float(s), 7) for s in scores],
            "signature": request.signature,
            "processed_at": _now(),
        }
    ).encode()


def dead_letter_message(
    poison: PoisonMessage,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    request_id: str | None,
) -> bytes:
    return json.dumps(
        {
            "reason": poison.reason,
            "category": poison.category,
            "request_id": request_id,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "original_b64": base64.b64encode(value or b"").decode("ascii"),
            "failed_at": _now(),
        }
    ).encode()


def request_message(request_id: str, *, pixels: Any = None, image: bytes | None = None) -> bytes:
    """A request as producers write it (used by the demo, benchmarks and tests)."""
    body: dict[str, Any] = {"request_id": request_id}
    if image is not None:
        body["image_b64"] = base64.b64encode(image).decode("ascii")
    else:
        body["pixels"] = np.asarray(pixels).astype(int).tolist()
    return json.dumps(body).encode()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
