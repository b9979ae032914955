"""Reading the running stack: its ``mlstack:`` settings as the Pulumi CLI passed them, and its secrets."""

from __future__ import annotations

import json
from typing import Any

from infra.config.keys import NAMESPACE, PROJECT_KEYS, ConfigError
from infra.config.parsing import parse
from infra.config.settings import Secrets, StackConfig


def stack_values() -> tuple[dict[str, Any], set[str]]:
    """The ``mlstack:`` settings of the running stack (decoded) and which of them are secret."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for full_key, raw in merged.items():
        namespace, _, name = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        if (
            runtime_config.is_config_secret(full_key)
            or full_key in runtime_config.get_config_secret_keys_env()
        ):
            secret.add(name)
            values[name] = "[secret]"  # validated for presence only; read through pulumi.Config.get_secret
            continue
        values[name] = decode(name, raw)
    return values, secret


def decode(name: str, raw: Any) -> Any:
    """A setting as the CLI passes it (structured ones as JSON text), decoded."""
    kind = PROJECT_KEYS.get(name, ("object", None))[0]
    if not isinstance(raw, str) or kind == "string":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{NAMESPACE}:{name}: expected a JSON/YAML {kind}, got {raw!r} ({error})"
        ) from error


def load() -> tuple[StackConfig, Secrets]:
    """Reads and validates the running stack's settings; raises ConfigError before any resource exists."""
    import pulumi

    values, secret_keys = stack_values()
    config = parse(values, secret_keys)
    settings = pulumi.Config(NAMESPACE)
    secrets = Secrets(
        k3s_token=settings.get_secret("k3sToken") if config.has_k3s_token else None,
        ssh_private_key=settings.get_secret("sshPrivateKey") if config.has_ssh_private_key else None,
    )
    return config, secrets
