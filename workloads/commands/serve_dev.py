"""Serve exported SavedModels over TF Serving's REST and gRPC APIs: the DEVELOPMENT server.

TF Serving is not installable from PyPI; this stands in for it on a laptop or a CI machine so the
same clients, load generator and Kafka inference worker run here and in the cluster (where TF
Serving itself serves). It speaks TF Serving's API, error shape and metric names, loads the
versions under <base path>/<integer>/ by TF Serving's rules, and picks up a promoted version
without a restart. It is one Python process; do not put it in front of real traffic.

Examples:
  python -m workloads serve-dev --model-base-path build/demo/serving/models/fashion_mnist
  curl localhost:8501/v1/models/fashion_mnist
  python -m workloads serve-dev --model-config-file models.config --enable-batching \\
      --batching-parameters-file batching.config   # files written by `tfs-config`
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from workloads.core import logs
from workloads.core.fsutil import atomic_write_text
from workloads.core.settings import CommandConfig, ConfigError, non_negative, option, positive, tcp_port
from workloads.serving import tfs_config

if TYPE_CHECKING:
    from workloads.serving.dev.model_store import ModelManager
    from workloads.serving.dev.server import DevServer

HELP = "DEVELOPMENT model server speaking TF Serving's REST and gRPC APIs (stands in for TF Serving)"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    model_base_path: str | None = option(
        None,
        help="directory or fsspec URL holding <version>/ SavedModel folders (one model; or use --model-config-file)",
    )
    model_name: str = option(
        tfs_config.MODEL_NAME,
        help="name of the model given by --model-base-path",
        check=tfs_config.model_name_problem,
    )
    model_config_file: str | None = option(
        None,
        help="TF Serving model config (text ModelServerConfig, e.g. from `tfs-config`): models, versions, labels",
    )
    model_config_file_poll_wait_seconds: float = option(
        0.0,
        help="re-read --model-config-file this often (labels, pinned versions); 0 = read once",
        check=non_negative,
    )
    file_system_poll_wait_seconds: float = option(
        1.0, help="how often to look for new version directories under each base path", check=positive
    )
    enable_model_warmup: bool = option(
        True, help="replay assets.extra/tf_serving_warmup_requests before a version serves (as TF Serving)"
    )
    max_num_load_retries: int = option(
        5, help="retries of a version that fails to load before giving up", check=non_negative
    )
    host: str = option("127.0.0.1", help="address to listen on; 0.0.0.0 exposes the server to the network")
    port: int = option(
        tfs_config.REST_PORT,
        help="REST port (TF Serving's --rest_api_port); 0 = any free port",
        check=tcp_port,
    )
    grpc_port: int | None = option(
        tfs_config.GRPC_PORT,
        help="gRPC port (TF Serving's --port); 0 = any free port, none = off",
        check=tcp_port,
    )
    enable_batching: bool = option(False, help="batch concurrent requests (TF Serving's --enable_batching)")
    batching_parameters_file: str | None = option(
        None, help="TF Serving BatchingParameters text file; default: the CPU profile of `tfs-config`"
    )
    monitoring_config_file: str | None = option(
        None,
        help="TF Serving MonitoringConfig text file; default: Prometheus metrics at /monitoring/prometheus/metrics",
    )
    max_request_bytes: int = option(
        16 * 1024 * 1024, help="largest request body accepted (413 above it)", check=positive
    )
    ready_file: str | None = option(
        None, help="write {rest_port, grpc_port, pid} as JSON here once serving (useful with port 0)"
    )

    def validate(self) -> None:
        if (self.model_base_path is None) == (self.model_config_file is None):
            raise ConfigError(
                "--model-base-path", "give either --model-base-path or --model-config-file (exactly one)"
            )


def _read_model_config(path: str) -> list[tfs_config.ServedModel]:
    try:
        return tfs_config.parse_model_config(pathlib.Path(path).read_text())
    except OSError as error:
        raise tfs_config.TfsConfigError(f"cannot read model config {path}: {error.strerror}") from error


def _read_optional(path: str | None, parse, default):
    if path is None:
        return default
    try:
        return parse(pathlib.Path(path).read_text())
    except OSError as error:
        raise tfs_config.TfsConfigError(f"cannot read {path}: {error.strerror}") from error


@dataclasses.dataclass(frozen=True)
class _ServerFiles:
    """What the server's config files (or their defaults) say: the models, batching, the metrics path."""

    models: list[tfs_config.ServedModel]
    batching: tfs_config.BatchingParameters | None
    metrics_path: str


def _read_files(config: Config) -> _ServerFiles:
    if config.model_config_file:
        models = _read_model_config(config.model_config_file)
    else:
        models = [tfs_config.ServedModel(config.model_name, config.model_base_path or "")]
    batching = None
    if config.enable_batching:
        batching = _read_optional(
            config.batching_parameters_file,
            tfs_config.parse_batching_parameters,
            tfs_config.batching_profile("cpu", os.cpu_count() or 1),
        )
    metrics_path = _read_optional(
        config.monitoring_config_file, tfs_config.parse_monitoring_config, tfs_config.METRICS_PATH
    )
    return _ServerFiles(models, batching, metrics_path)


def _load_models(config: Config, models: list[tfs_config.ServedModel]) -> ModelManager:
    from workloads.serving.dev import savedmodel
    from workloads.serving.dev.model_store import ModelManager

    manager = ModelManager(
        models,
        loader=functools.partial(savedmodel.load, warmup=config.enable_model_warmup),
        max_num_load_retries=config.max_num_load_retries,
    )
    manager.poll()  # like TF Serving: load what is there before answering
    for name, versions in manager.availability().items():
        if not versions:
            log.warning(
                "no loadable version of %s yet; waiting for one to appear",
                name,
                extra=logs.fields(model=name),
            )
    return manager


def _config_reloader(config: Config) -> Callable[[], list[tfs_config.ServedModel] | None] | None:
    """Re-reads --model-config-file when polled; a bad new file keeps the current config."""
    if not config.model_config_file:
        return None

    def reload_config() -> list[tfs_config.ServedModel] | None:
        try:
            return _read_model_config(config.model_config_file or "")
        except tfs_config.TfsConfigError as error:
            log.error("keeping the current model config: %s", error)
            return None

    return reload_config


def run(config: Config) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from workloads.serving.dev.server import DevServer

    try:
        files = _read_files(config)
    except tfs_config.TfsConfigError as error:
        log.error("%s", error)
        return 2
    manager = _load_models(config, files.models)
    try:
        server = DevServer(
            manager,
            host=config.host,
            rest_port=config.port,
            grpc_port=config.grpc_port,
            batching=files.batching,
            metrics_path=files.metrics_path,
            max_request_bytes=config.max_request_bytes,
        )
    except OSError as error:
        log.error("cannot listen on %s: %s; choose other ports with --port / --grpc-port", config.host, error)
        manager.stop()
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    manager.start(
        config.file_system_poll_wait_seconds,
        _config_reloader(config),
        config.model_config_file_poll_wait_seconds,
    )
    _announce(config, server, files, manager)
    while not stop.wait(0.5):
        pass
    log.info("shutting down")
    server.stop()
    manager.stop()
    return 0


def _announce(config: Config, server: DevServer, files: _ServerFiles, manager: ModelManager) -> None:
    """Writes --ready-file and logs where the server listens."""
    ports = {"rest_port": server.rest_port, "grpc_port": server.grpc_port, "pid": os.getpid()}
    if config.ready_file:
        atomic_write_text(config.ready_file, json.dumps(ports))
    log.info(
        "development server ready: REST http://%s:%d, gRPC %s, batching %s",
        config.host,
        server.rest_port,
        f"{config.host}:{server.grpc_port}" if server.grpc_port else "off",
        "on" if files.batching else "off",
        extra=logs.fields(**ports, models=manager.availability()),
    )
