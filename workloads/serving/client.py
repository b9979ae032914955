"""Clients for TF Serving's REST and gRPC APIs (and the development server that speaks both).

``make_client("http://host:8501", ...)`` gives the REST client, ``make_client("grpc://host:8500", ...)``
the gRPC one; both have the same methods:

- ``predict_images(images)``: the ``serving_default`` signature, float pixels ``[N, 28, 28]``;
- ``predict_image_bytes([png, ...])``: the ``serving_bytes`` signature, encoded images;
- ``predict(inputs, signature=...)``: any signature, inputs by name;
- ``model_status()`` and ``metadata()``: which versions are loaded, and their signatures.

Every call takes ``version=`` or ``label=`` to route to one model version. Each attempt has a timeout;
answers that may succeed when repeated (server busy, restarting, unreachable, too slow) are retried
with capped exponential backoff and full jitter; everything else fails at once with a
:class:`ServingError` that quotes what the server answered.

TF Serving's REST predict response does not say which version answered; the gRPC one does. To know
the version over REST, pin it: ``predict(..., version=client.latest_available_version())``.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from workloads.core.errors import WorkloadError
from workloads.serving import tensors
from workloads.serving.codes import HTTP_STATUS, RETRYABLE_CODES, RETRYABLE_HTTP_STATUSES, Code

DEFAULT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
IMAGES_INPUT = "images"
IMAGE_BYTES_INPUT = "image_bytes"
T = TypeVar("T")
_CODE_FOR_HTTP = {status: code for code, status in reversed(HTTP_STATUS.items())}


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to repeat a request that failed in a retryable way."""

    attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, got {self.attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("retry backoffs must be 0 or more and the multiplier at least 1")

    def delays(self) -> Iterator[float]:
        """Sleep before each retry: uniform in [0, capped exponential] ("full jitter")."""
        ceiling = self.initial_backoff_s
        for _ in range(self.attempts - 1):
            yield random.uniform(0, min(ceiling, self.max_backoff_s))
            ceiling *= self.multiplier


class ServingError(WorkloadError):
    """The model server refused or failed a request; says what was asked and what it answered."""

    def __init__(
        self,
        operation: str,
        message: str,
        *,
        code: Code | None = None,
        http_status: int | None = None,
        retryable: bool = False,
        attempts: int = 1,
    ) -> None:
        answer = " ".join(
            part for part in (str(http_status) if http_status else "", code.name if code else "") if part
        )
        text = f"{operation}: {answer + ': ' if answer else ''}{message}"
        if attempts > 1:
            text += f" (gave up after {attempts} attempts)"
        super().__init__(text)
        self.operation = operation
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retryable = retryable
        self.attempts = attempts

    def with_attempts(self, attempts: int) -> ServingError:
        return ServingError(
            self.operation,
            self.message,
            code=self.code,
            http_status=self.http_status,
            retryable=self.retryable,
            attempts=attempts,
        )


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A predict answer: output tensors by name, and the version that answered (gRPC only)."""

    outputs: dict[str, np.ndarray]
    model_version: int | None

    @property
    def scores(self) -> np.ndarray:
        return np.asarray(self.outputs["scores"], dtype=np.float32)

    @property
    def class_ids(self) -> np.ndarray:
        return np.asarray(self.outputs["class_ids"], dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One entry of TF Serving's model status: a version and its state (``AVAILABLE``, ``LOADING`` ...)."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


class ModelServerClient(abc.ABC):
    """What both protocols offer; see the module docstring."""

    def __init__(self, target: str, model_name: str, timeout_s: float, retry: RetryPolicy) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout must be greater than 0, got {timeout_s}")
        self.target = target
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.retry = retry

    # The protocol-specific part.
    @abc.abstractmethod
    def _predict_once(
        self, inputs: Mapping[str, np.ndarray], signature: str, version: int | None, label: str | None
    ) -> Prediction: ...

    @abc.abstractmethod
    def _status_once(self, version: int | None, label: str | None) -> list[VersionStatus]: ...

    @abc.abstractmethod
    def _metadata_once(self, version: int | None, label: str | None) -> dict[str, Any]: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Releases connections."""

    # The public API.
    def predict(
        self,
        inputs: Mapping[str, Any],
        *,
        signature: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
    ) -> Prediction:
        _check_route(version, label)
        arrays = {name: np.asarray(value) for name, value in inputs.items()}
        return self._with_retries(lambda: self._predict_once(arrays, signature, version, label))

    def predict_images(
        self, images: Any, *, version: int | None = None, label: str | None = None
    ) -> Prediction:
        """``serving_default``: ``images`` are raw pixel intensities 0-255, shape ``[N, 28, 28]``."""
        pixels = np.asarray(images, dtype=np.float32)
        return self.predict({IMAGES_INPUT: pixels}, signature=DEFAULT_SIGNATURE, version=version, label=label)

    def predict_image_bytes(
        self, images: Sequence[bytes], *, version: int | None = None, label: str | None = None
    ) -> Prediction:
        """``serving_bytes``: PNG or JPEG files, any size, grey or colour."""
        return self.predict(
            {IMAGE_BYTES_INPUT: tensors.to_string_array(list(images))},
            signature=BYTES_SIGNATURE,
            version=version,
            label=label,
        )

    def model_status(self, *, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        _check_route(version, label)
        return self._with_retries(lambda: self._status_once(version, label))

    def metadata(self, *, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """The ``signature_def`` map as TF Serving's JSON: signature name -> inputs, outputs, method."""
        _check_route(version, label)
        return self._with_retries(lambda: self._metadata_once(version, label))

    def latest_available_version(self) -> int:
        available = [s.version for s in self.model_status() if s.state == "AVAILABLE"]
        if not available:
            raise ServingError(
                f"status of model {self.model_name} at {self.target}",
                "no version is AVAILABLE; check the server log and the model base path",
                code=Code.UNAVAILABLE,
                retryable=True,
            )
        return max(available)

    def _with_retries(self, call: Callable[[], T]) -> T:
        delays = self.retry.delays()
        attempt = 1
        while True:
            try:
                return call()
            except ServingError as error:
                delay = next(delays, None) if error.retryable else None
                if delay is None:
                    raise error.with_attempts(attempt) from None
            time.sleep(delay)
            attempt += 1

    def __enter__(self) -> ModelServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RestClient(ModelServerClient):
    """TF Serving's REST API (``/v1/models/...``), JSON over HTTP with keep-alive connections."""

    def __init__(
        self,
        base_url: str,
        model_name: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(base_url.rstrip("/"), model_name, timeout_s, retry or RetryPolicy())
        self._local = threading.local()  # a requests.Session per thread: sessions are not thread-safe
        self._sessions: list[Any] = []
        self._lock = threading.Lock()

    def model_url(self, version: int | None = None, label: str | None = None) -> str:
        url = f"{self.target}/v1/models/{urllib.parse.quote(self.model_name, safe='')}"
        if version is not None:
            url += f"/versions/{version}"
        elif label is not None:
            url += f"/labels/{urllib.parse.quote(label, safe='')}"
        return url

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = requests.Session()
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def _request(self, method: str, url: str, body: bytes | None = None) -> Any:
        import requests

        operation = f"{method} {url}"
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            response = self._session().request(
                method, url, data=body, headers=headers, timeout=self.timeout_s
            )
        except requests.Timeout:
            raise ServingError(
                operation,
                f"no answer within {self.timeout_s:g} s",
                code=Code.DEADLINE_EXCEEDED,
                retryable=True,
            ) from None
        except requests.ConnectionError as error:
            raise ServingError(
                operation,
                f"cannot connect ({_root_cause(error)}); is the model server running at {self.target}?",
                code=Code.UNAVAILABLE,
                retryable=True,
            ) from None
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                raise ServingError(
                    operation, f"answered 200 with a body that is not JSON: {response.text[:200]!r}"
                ) from None
        raise ServingError(
            operation,
            _error_text(response),
            code=_CODE_FOR_HTTP.get(response.status_code),
            http_status=response.status_code,
            retryable=response.status_code in RETRYABLE_HTTP_STATUSES,
        )

    def _predict_once(
        self, inputs: Mapping[str, np.ndarray], signature: str, version: int | None, label: str | None
    ) -> Prediction:
        body = {"signature_name": signature, "inputs": {name: _to_json(a) for name, a in inputs.items()}}
        answer = self._request("POST", self.model_url(version, label) + ":predict", json.dumps(body).encode())
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if outputs is None:
            raise ServingError(
                f"POST {self.model_url(version, label)}:predict", f"answer has no 'outputs': {answer!r:.200}"
            )
        if not isinstance(outputs, dict):  # a signature with one output answers with the bare tensor
            outputs = {"output": outputs}
        return Prediction({name: _from_json(value) for name, value in outputs.items()}, version)

    def _status_once(self, version: int | None, label: str | None) -> list[VersionStatus]:
        answer = self._request("GET", self.model_url(version, label))
        return [
            VersionStatus(
                version=int(entry["version"]),
                state=entry["state"],
                error_code=entry.get("status", {}).get("error_code", "OK"),
                error_message=entry.get("status", {}).get("error_message", ""),
            )
            for entry in answer.get("model_version_status", [])
        ]

    def _metadata_once(self, version: int | None, label: str | None) -> dict[str, Any]:
        answer = self._request("GET", self.model_url(version, label) + "/metadata")
        return answer["metadata"]["signature_def"]["signature_def"]


class GrpcClient(ModelServerClient):
    """TF Serving's gRPC ``PredictionService`` and ``ModelService`` (``tensorflow-serving-api``)."""

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        super().__init__(target, model_name, timeout_s, retry or RetryPolicy())
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _spec(self, message, version: int | None, label: str | None, signature: str | None = None) -> None:
        message.model_spec.name = self.model_name
        if signature is not None:
            message.model_spec.signature_name = signature
        if version is not None:
            message.model_spec.version.value = version
        elif label is not None:
            message.model_spec.version_label = label

    def _call(self, operation: str, method: Callable[..., T], request: Any) -> T:
        import grpc

        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as error:
            code = Code(error.code().value[0]) if error.code() else Code.UNKNOWN
            details = error.details() or "(no details)"
            if code == Code.UNAVAILABLE:
                details += f"; is the model server running at {self.target}?"
            raise ServingError(
                f"{operation} {self.model_name} at {self.target}",
                details,
                code=code,
                retryable=code in RETRYABLE_CODES,
            ) from None

    def _predict_once(
        self, inputs: Mapping[str, np.ndarray], signature: str, version: int | None, label: str | None
    ) -> Prediction:
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._spec(request, version, label, signature)
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(tensors.make_tensor_proto(array))
        response = self._call("Predict", self._predictions.Predict, request)
        outputs = {name: tensors.make_ndarray(proto) for name, proto in response.outputs.items()}
        answered = response.model_spec.version.value if response.model_spec.HasField("version") else None
        return Prediction(outputs, answered)

    def _status_once(self, version: int | None, label: str | None) -> list[VersionStatus]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request, version, label)
        response = self._call("GetModelStatus", self._models.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [
            VersionStatus(
                version=entry.version,
                state=state_name(entry.state),
                error_code=Code(entry.status.error_code).name,
                error_message=entry.status.error_message,
            )
            for entry in response.model_version_status
        ]

    def _metadata_once(self, version: int | None, label: str | None) -> dict[str, Any]:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request, version, label)
        response = self._call("GetModelMetadata", self._predictions.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return json_format.MessageToDict(signatures, preserving_proto_field_name=True)["signature_def"]


def make_client(
    server_url: str,
    model_name: str,
    *,
    timeout_s: float = 10.0,
    retry: RetryPolicy | None = None,
) -> ModelServerClient:
    """``http(s)://host:port`` -> REST, ``grpc://host:port`` -> gRPC."""
    scheme, _, rest = server_url.partition("://")
    if scheme in {"http", "https"}:
        return RestClient(server_url, model_name, timeout_s=timeout_s, retry=retry)
    if scheme == "grpc" and rest:
        return GrpcClient(rest.rstrip("/"), model_name, timeout_s=timeout_s, retry=retry)
    raise ValueError(
        f"server URL {server_url!r}: use http://HOST:PORT (REST, TF Serving's 8501) or "
        "grpc://HOST:PORT (gRPC, TF Serving's 8500)"
    )


def _check_route(version: int | None, label: str | None) -> None:
    if version is not None and label is not None:
        raise ValueError(f"give a version ({version}) or a label ({label!r}), not both")


def _to_json(array: np.ndarray) -> Any:
    """JSON for one input tensor; bytes become TF Serving's ``{"b64": ...}`` objects."""
    if array.dtype.kind in "OS":
        flat = [
            {"b64": base64.b64encode(v).decode("ascii")} for v in tensors.to_string_array(array).reshape(-1)
        ]
        return np.asarray(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def _from_json(value: Any) -> np.ndarray:
    if isinstance(value, list) and value and isinstance(_first_leaf(value), dict):
        return np.vectorize(lambda item: base64.b64decode(item["b64"]), otypes=[object])(
            np.asarray(value, dtype=object)
        )
    return np.asarray(value)


def _first_leaf(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _error_text(response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return f"{response.reason}: {response.text[:300]!r}"


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return str(error) or type(error).__name__
