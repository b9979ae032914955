"""The development server: TF Serving's REST and gRPC APIs over exported SavedModels, in Python.

TF Serving cannot be installed from PyPI, so this stands in for it on laptops and CI machines; the
clients, the load generator and the Kafka inference worker run unchanged against both. It is a
development server: one process, Python threads, no TLS. In the cluster, TF Serving serves.

REST (``--port``, TF Serving's 8501):

- ``POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`` (row ``instances`` or columnar
  ``inputs``, ``{"b64": ...}`` for binary strings);
- ``GET /v1/models/<name>[/versions/<v>|/labels/<l>]`` (status) and ``.../metadata`` (signatures);
- ``GET /monitoring/prometheus/metrics`` (TF Serving's metric names, see :mod:`workloads.serving.dev.metrics`).

gRPC (``--grpc-port``, TF Serving's 8500): ``PredictionService.Predict`` and ``GetModelMetadata``,
``ModelService.GetModelStatus`` and ``HandleReloadConfigRequest``.

Every failure is TF Serving's error: a canonical code, over REST the HTTP status TF Serving uses
and the body ``{"error": "<message>"}``. Bad requests (malformed JSON, wrong shape or dtype, unknown
model, version or label, a body over ``max_request_bytes``) are 4xx and never reach the model.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from concurrent import futures
from typing import Any

import numpy as np

from workloads.serving import tensors, tfs_config
from workloads.serving.codes import Code, ServingStatus, invalid_argument
from workloads.serving.dev import json_tensors
from workloads.serving.dev.batching import Batcher
from workloads.serving.dev.metrics import TfServingMetrics
from workloads.serving.dev.model_store import INT64_MAX, ModelManager
from workloads.serving.dev.savedmodel import LoadedModel, Signature, check_shape
from workloads.serving.tfs_config import BatchingParameters

log = logging.getLogger(__name__)
UNKNOWN_MODEL_LABEL = "_unknown_"  # metrics label for names no model has, so junk cannot grow the page

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)", re.IGNORECASE
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?", re.IGNORECASE
)


class Predictor:
    """What REST and gRPC share: route to a version, run (batched or not), count and time it."""

    def __init__(
        self, manager: ModelManager, metrics: TfServingMetrics, batching: BatchingParameters | None
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.batcher = Batcher(batching, self._run_timed) if batching else None

    @contextlib.contextmanager
    def request(self, model_name: str, entrypoint: str, api: str = "predict") -> Iterator[None]:
        """Wraps one request: records its status and latency; unexpected errors become INTERNAL."""
        start = time.perf_counter()
        label = model_name if model_name in self.manager.model_names() else UNKNOWN_MODEL_LABEL
        code = Code.OK
        try:
            yield
        except ServingStatus as status:
            code = status.code
            raise
        except Exception as error:
            code = Code.INTERNAL
            log.exception("%s request for %s failed", entrypoint, model_name)
            raise ServingStatus(
                Code.INTERNAL, f"the development server failed: {type(error).__name__}: {error}"
            ) from None
        finally:
            self.metrics.record_request(label, code, api, entrypoint, (time.perf_counter() - start) * 1e6)

    def run(
        self, model: LoadedModel, signature: Signature, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        if self.batcher is not None:
            return self.batcher.submit(model, signature, inputs)
        return self._run_timed(model, signature, inputs)

    def _run_timed(
        self, model: LoadedModel, signature: Signature, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            return model.run(signature, inputs)
        finally:
            self.metrics.record_runtime(model.name, "predict", (time.perf_counter() - start) * 1e6)

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()


def status_json(statuses) -> dict[str, Any]:
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {"error_code": s.error_code.name, "error_message": s.error_message},
            }
            for s in statuses
        ]
    }


def signature_def_map(model: LoadedModel):
    from tensorflow_serving.apis import get_model_metadata_pb2

    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, definition in model.signature_defs.items():
        signatures.signature_def[name].CopyFrom(definition)
    return signatures


def metadata_json(model: LoadedModel) -> dict[str, Any]:
    from google.protobuf import json_format

    signatures = json_format.MessageToDict(
        signature_def_map(model), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": signatures},
    }


def _parse_version(text: str | None) -> int | None:
    if not text:
        return None
    version = int(text)
    if version > INT64_MAX:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return version


class _RestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mlstack-serve-dev"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection gives its thread back after this
    wbufsize = 64 * 1024  # headers and body leave in one write (flushed per request)
    server: _RestServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # Connection handling: our own loop so every answer, even to a broken request line, is JSON.
    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
                self.send_error(414, "request line too long")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._dispatch()
            self.wfile.flush()
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparseable request line: answer in HTTP/1.1 anyway
            self.request_version = "HTTP/1.1"
        self._send_json(code, {"error": message or explain or self.responses.get(code, ("error",))[0]})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_status(self, status: ServingStatus) -> None:
        self._send_json(status.http_status, {"error": status.message})

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering why it cannot be read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(
                411, "chunked bodies are not supported by the development server; send Content-Length"
            )
            return None
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.send_error(400, f"Content-Length {length_text!r} is not a non-negative integer")
            return None
        limit = self.server.app.max_request_bytes
        if length > limit:
            self.send_error(
                413,
                f"request body of {length} bytes exceeds the limit of {limit} bytes (--max-request-bytes)",
            )
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = urllib.parse.urlsplit(self.path).path
        app = self.server.app
        try:
            if app.metrics_path and path == app.metrics_path:
                if self.command != "GET":
                    raise invalid_argument(f"use GET for {path}")
                self._send_metrics()
            elif path.lower().startswith("/v1/"):
                self._send_json(200, self._v1(path, body))
            else:
                self._send_json(
                    404, {"error": f"no such endpoint: {path}; TF Serving's REST API lives under /v1/models/"}
                )
        except ServingStatus as status:
            self._send_status(status)

    def _send_metrics(self) -> None:
        payload = self.server.app.metrics.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _v1(self, path: str, body: bytes) -> Any:
        app = self.server.app
        if self.command == "POST" and (match := _PREDICT_PATH.fullmatch(path)):
            name, version_text, label, method = match.groups()
            name = urllib.parse.unquote(name)
            return app.rest_predict(
                name, version_text, urllib.parse.unquote(label) if label else None, method.lower(), body
            )
        if self.command == "GET" and (match := _STATUS_PATH.fullmatch(path)):
            name, version_text, label, subresource = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            name = urllib.parse.unquote(name)
            label = urllib.parse.unquote(label) if label else None
            version = _parse_version(version_text)
            if subresource:
                return metadata_json(app.manager.resolve(name, version, label))
            return status_json(app.manager.status(name, version, label))
        raise invalid_argument(f"Malformed request: {self.command} {path}")


class _RestServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: DevServer) -> None:
        self.app = app
        super().__init__(address, _RestHandler)


class DevServer:
    """Owns the REST and gRPC front ends over one :class:`ModelManager`."""

    def __init__(
        self,
        manager: ModelManager,
        *,
        host: str = "127.0.0.1",
        rest_port: int = tfs_config.REST_PORT,
        grpc_port: int | None = tfs_config.GRPC_PORT,
        batching: BatchingParameters | None = None,
        metrics_path: str | None = tfs_config.METRICS_PATH,
        max_request_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.manager = manager
        self.metrics = TfServingMetrics()
        self.predictor = Predictor(manager, self.metrics, batching)
        self.metrics_path = metrics_path
        self.max_request_bytes = max_request_bytes
        self._host = host
        self._rest = _RestServer((host, rest_port), self)
        self._rest_thread = threading.Thread(target=self._rest.serve_forever, name="rest", daemon=True)
        self._grpc = None
        self.grpc_port: int | None = None
        if grpc_port is not None:
            self._grpc, self.grpc_port = self._make_grpc(host, grpc_port)

    @property
    def rest_port(self) -> int:
        return self._rest.server_address[1]

    def start(self) -> None:
        self._rest_thread.start()
        if self._grpc is not None:
            self._grpc.start()

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait()
        self._rest.shutdown()
        self._rest.server_close()
        self.predictor.stop()

    # REST
    def rest_predict(
        self, name: str, version_text: str | None, label: str | None, method: str, body: bytes
    ) -> Any:
        with self.predictor.request(name, "REST", method):
            version = _parse_version(version_text)
            request = json_tensors.parse_body(body)
            model = self.manager.resolve(name, version, label)
            signature = model.signature(request.signature_name)
            if method != "predict":
                raise invalid_argument(
                    f"signature '{signature.name}' has method_name {signature.method_name}, not a {method} "
                    "signature; the development server implements :predict"
                )
            inputs = json_tensors.to_inputs(request, signature)
            outputs = self.predictor.run(model, signature, inputs)
            return json_tensors.render_outputs(outputs, request.format)

    # gRPC
    def _make_grpc(self, host: str, port: int):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        limit = max(self.max_request_bytes, 4 * 1024 * 1024)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc"),
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", -1)],
        )
        predictions, models = _grpc_services(self)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(predictions, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
        bound = server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise OSError(f"cannot listen for gRPC on {host}:{port}; is the port in use? (--grpc-port)")
        return server, bound

    def grpc_predict(self, request) -> Any:
        from tensorflow_serving.apis import predict_pb2

        spec = request.model_spec
        with self.predictor.request(spec.name, "GRPC"):
            version = spec.version.value if spec.HasField("version") else None
            model = self.manager.resolve(spec.name, version, spec.version_label or None)
            signature = model.signature(spec.signature_name)
            inputs = _grpc_inputs(request.inputs, signature)
            outputs = self.predictor.run(model, signature, inputs)
            wanted = list(request.output_filter) or list(outputs)
            unknown = sorted(set(wanted) - set(outputs))
            if unknown:
                raise invalid_argument(
                    f"output_filter names outputs {unknown} that signature '{signature.name}' lacks"
                )
            response = predict_pb2.PredictResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.model_spec.signature_name = signature.name
            for name in wanted:
                response.outputs[name].CopyFrom(tensors.make_tensor_proto(outputs[name]))
            return response


def _grpc_inputs(protos: Mapping[str, Any], signature: Signature) -> dict[str, np.ndarray]:
    expected = sorted(signature.inputs)
    if sorted(protos) != expected:
        raise invalid_argument(
            f"signature '{signature.name}' takes inputs {expected}, the request has {sorted(protos)}"
        )
    inputs = {}
    for name, proto in protos.items():
        want = signature.inputs[name].dtype
        if proto.dtype != want.enum:
            got = tensors.BY_ENUM.get(proto.dtype)
            raise invalid_argument(
                f"Expects arg '{name}' to be {want.name} but {got.name if got else proto.dtype} is provided"
            )
        try:
            inputs[name] = tensors.make_ndarray(proto)
        except tensors.TensorConversionError as error:
            raise invalid_argument(f"input '{name}': {error}") from None
        check_shape(signature, name, inputs[name])
    return inputs


def _abort(context, status: ServingStatus):
    import grpc

    context.abort(grpc.StatusCode[status.code.name], status.message)


def _grpc_services(app: DevServer) -> tuple[Any, Any]:
    """TF Serving's ``PredictionService`` (Classify/Regress/MultiInference: UNIMPLEMENTED) and ``ModelService``."""
    return _prediction_service(app), _model_service(app)


def _route(spec) -> tuple[int | None, str | None]:
    """The version and label a ``ModelSpec`` asks for (None: not asked)."""
    return (spec.version.value if spec.HasField("version") else None), (spec.version_label or None)


def _prediction_service(app: DevServer) -> Any:
    from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            try:
                return app.grpc_predict(request)
            except ServingStatus as status:
                _abort(context, status)

        def GetModelMetadata(self, request, context):
            try:
                fields = set(request.metadata_field)
                if fields != {"signature_def"}:
                    raise invalid_argument(f"metadata_field must be ['signature_def'], got {sorted(fields)}")
                model = app.manager.resolve(request.model_spec.name, *_route(request.model_spec))
            except ServingStatus as status:
                _abort(context, status)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.metadata["signature_def"].Pack(signature_def_map(model))
            return response

    return PredictionService()


def _model_service(app: DevServer) -> Any:
    from google.protobuf import text_format
    from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            try:
                statuses = app.manager.status(request.model_spec.name, *_route(request.model_spec))
            except ServingStatus as status:
                _abort(context, status)
            response = get_model_status_pb2.GetModelStatusResponse()
            state = get_model_status_pb2.ModelVersionStatus.State.Value
            for entry in statuses:
                item = response.model_version_status.add(version=entry.version, state=state(entry.state))
                item.status.error_code = int(entry.error_code)
                item.status.error_message = entry.error_message
            return response

        def HandleReloadConfigRequest(self, request, context):
            try:
                configs = tfs_config.parse_model_config(text_format.MessageToString(request.config))
            except tfs_config.TfsConfigError as error:
                _abort(context, invalid_argument(str(error)))
            app.manager.set_config(configs)
            return model_management_pb2.ReloadConfigResponse()

    return ModelService()
