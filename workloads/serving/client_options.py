"""Settings every command that talks to a model server shares (``predict``, ``loadtest``)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from workloads.core.settings import CommandConfig, ConfigError, non_negative, option, positive
from workloads.serving import tfs_config
from workloads.serving.client import DEFAULT_SIGNATURE, ModelServerClient, RetryPolicy, make_client


def _server_url(value: str) -> str | None:
    scheme = value.partition("://")[0]
    if scheme not in {"http", "https", "grpc"} or "://" not in value:
        return f"must start with http:// or https:// (REST) or grpc:// (gRPC), got {value!r}"
    return None


@dataclasses.dataclass(frozen=True)
class ClientOptions(CommandConfig):
    server_url: str = option(
        f"http://127.0.0.1:{tfs_config.REST_PORT}",
        help=f"model server: http://HOST:{tfs_config.REST_PORT} for REST, grpc://HOST:{tfs_config.GRPC_PORT} for "
        "gRPC (TF Serving or serve-dev)",
        check=_server_url,
    )
    model_name: str = option(
        tfs_config.MODEL_NAME, help="model to ask (/v1/models/<name>)", check=tfs_config.model_name_problem
    )
    signature: Literal["serving_default", "serving_bytes"] = option(
        DEFAULT_SIGNATURE, help="serving_default sends pixels, serving_bytes sends PNG-encoded images"
    )
    version: int | None = option(None, help="ask this model version (default: the latest)", check=positive)
    label: str | None = option(None, help="ask the version with this label, e.g. stable or canary")
    timeout: float = option(10.0, help="seconds to wait for each answer", check=positive)
    retries: int = option(
        2, help="retries of busy/unreachable/timed-out requests (never of bad requests)", check=non_negative
    )

    def validate(self) -> None:
        if self.version is not None and self.label is not None:
            raise ConfigError("--label", "give --version or --label, not both")

    def make_client(self) -> ModelServerClient:
        return make_client(
            self.server_url,
            self.model_name,
            timeout_s=self.timeout,
            retry=RetryPolicy(attempts=self.retries + 1),
        )
