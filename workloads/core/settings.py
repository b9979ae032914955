"""Typed command configuration, read once from flags, ``MLSTACK_*`` environment variables and a file.

Each command declares a frozen dataclass whose fields are made with :func:`option`; the help text,
the default, the allowed values and the checks live on the field, so ``--help``, the environment and
the config file all come from one definition and cannot drift. Precedence: a flag wins over the
environment, which wins over the config file, which wins over the default. Every error names the
field and where its value came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

ENV_PREFIX = "MLSTACK_"
Check = Callable[[Any], str | None]
C = TypeVar("C", bound="CommandConfig")


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; ``field`` names it as the user wrote it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[Any] | None = None,
    check: Check | None = None,
    secret: bool = False,
    metavar: str | None = None,
) -> Any:
    """A config field. ``check`` returns an error message for a bad value, or None when it is good."""
    metadata = {"help": help, "choices": choices, "check": check, "secret": secret, "metavar": metavar}
    if isinstance(default, list | dict | set):
        raise TypeError("config defaults must be immutable; use a tuple")
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class CommandConfig:
    """Base of every command's configuration: runs each field's check, then ``validate``."""

    def __post_init__(self) -> None:
        hints = _type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            _check_type(field.name, hints[field.name], value)
            check = field.metadata.get("check")
            problem = check(value) if check else None
            if problem:
                raise ConfigError(flag_name(field.name), problem)
        self.validate()

    def validate(self) -> None:
        """Cross-field rules; raise :class:`ConfigError` naming the offending flag."""

    def public_dict(self) -> dict[str, Any]:
        """The effective settings for logs, with secrets masked."""
        return {
            f.name: "***" if f.metadata.get("secret") and getattr(self, f.name) else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


# Checks shared by many commands. Each returns a message for a bad value, None for a good one.
def positive(value: float | None) -> str | None:
    return None if value is None or value > 0 else f"must be greater than 0, got {value}"


def non_negative(value: float | None) -> str | None:
    return None if value is None or value >= 0 else f"must be 0 or more, got {value}"


def at_most(limit: float) -> Check:
    def check(value: float | None) -> str | None:
        return None if value is None or value <= limit else f"must be at most {limit}, got {value}"

    return check


def tcp_port(value: int | None) -> str | None:
    return (
        None
        if value is None or 0 <= value <= 65535
        else f"must be a TCP port 0-65535 (0 = any free), got {value}"
    )


def non_empty(value: str | tuple | None) -> str | None:
    return None if value is None or len(value) > 0 else "must not be empty"


def add_arguments(parser: argparse.ArgumentParser, config_type: type[CommandConfig]) -> None:
    """Declare one flag per field; defaults stay out of the namespace so precedence can be applied."""
    hints = _type_hints(config_type)
    for field in dataclasses.fields(config_type):
        kind = hints[field.name]
        default = "required" if field.default is dataclasses.MISSING else _show(field.default)
        meta = field.metadata
        help_text = f"{meta['help']} [default: {default}; env {env_name(field.name)}]"
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS, "help": help_text}
        base, _ = _unwrap_optional(kind)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            choices = meta.get("choices") or _literal_choices(base)
            if choices:
                kwargs["choices"] = [str(c) for c in choices]
            if typing.get_origin(base) is tuple:
                kwargs["nargs"] = "+"
            kwargs["metavar"] = meta.get("metavar") or (None if choices else field.name.upper())
        parser.add_argument(flag_name(field.name), **kwargs)


def resolve(
    config_type: type[C],
    flags: argparse.Namespace | Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: str | pathlib.Path | None = None,
) -> C:
    """Build the config from flags, then the environment, then the file, then the defaults."""
    given = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags)
    from_file = _read_config_file(config_type, config_file) if config_file else {}
    hints = _type_hints(config_type)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config_type):
        kind = hints[field.name]
        if field.name in given:
            values[field.name] = _convert(kind, given[field.name], flag_name(field.name), field)
        elif env_name(field.name) in environ:
            values[field.name] = _convert(kind, environ[env_name(field.name)], env_name(field.name), field)
        elif field.name in from_file:
            values[field.name] = _convert(kind, from_file[field.name], f"{config_file}: {field.name}", field)
        elif field.default is dataclasses.MISSING:
            raise ConfigError(
                flag_name(field.name),
                f"is required: pass {flag_name(field.name)}, set {env_name(field.name)} or put "
                f"'{field.name}' in the --config file",
            )
    return config_type(**values)


def _read_config_file(config_type: type[CommandConfig], path: str | pathlib.Path) -> dict[str, Any]:
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError("--config", f"cannot read {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(
            "--config", f"{path} is not UTF-8 text: {error.reason} at byte {error.start}"
        ) from None
    try:
        data = _parse_config(path, text)
    except ValueError as error:
        problem = " ".join(str(error).split())  # YAML's messages point at the spot over several lines
        raise ConfigError(
            "--config", f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {problem}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must hold a mapping of setting names to values")
    known = {f.name for f in dataclasses.fields(config_type)}
    normalised = {str(key).replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(normalised) - known)
    if unknown:
        raise ConfigError(
            "--config", f"{path}: unknown setting(s) {unknown}; valid settings: {sorted(known)}"
        )
    return normalised


def _parse_config(path: pathlib.Path, text: str) -> Any:
    """JSON, or YAML for ``.yaml``/``.yml``; any malformation is raised as a ``ValueError``."""
    if path.suffix not in {".yaml", ".yml"}:
        return json.loads(text)
    try:
        import yaml
    except ImportError:
        raise ValueError(
            "reading YAML needs PyYAML (pip install pyyaml); or write the file as JSON"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:  # not a ValueError: it used to escape as a traceback
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{getattr(error, 'problem', None) or error}{where}") from None


def _convert(kind: Any, raw: Any, source: str, field: dataclasses.Field) -> Any:
    base, optional = _unwrap_optional(kind)
    if raw is None or (optional and isinstance(raw, str) and raw.lower() in {"", "none", "null"}):
        if optional:
            return None
        raise ConfigError(source, "must be set")
    try:
        value = _convert_to(base, raw)
    except (TypeError, ValueError) as error:
        raise ConfigError(source, f"{error}") from None
    choices = field.metadata.get("choices") or _literal_choices(base)
    if choices and value not in choices:
        raise ConfigError(source, f"must be one of {list(choices)}, got {value!r}")
    return value


def _convert_to(base: Any, raw: Any) -> Any:
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list | tuple):
            raise TypeError(f"expected a list, got {raw!r}")
        # Flags and the environment may separate items with commas as well as spaces.
        items = [
            p.strip() for r in raw for p in (r.split(",") if isinstance(r, str) else [r]) if str(p).strip()
        ]
        return tuple(_convert_to(item, part) for part in items)
    literal = _literal_choices(base)
    if literal:
        base = type(literal[0])
    if base is bool:
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if base is int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"expected an integer, got {raw!r}")
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    if base is float:
        if isinstance(raw, bool):
            raise ValueError(f"expected a number, got {raw!r}")
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    if base is str:
        if not isinstance(raw, str):
            raise TypeError(f"expected a string, got {raw!r}")
        return raw
    raise TypeError(f"unsupported setting type {base!r}")


def _check_type(name: str, kind: Any, value: Any) -> None:
    """Configs built in code (not through :func:`resolve`) get the same type guarantees."""
    base, optional = _unwrap_optional(kind)
    if value is None:
        if not optional:
            raise ConfigError(flag_name(name), "must be set")
        return
    origin = typing.get_origin(base)
    expected: Any = origin if origin is tuple else base
    literal = _literal_choices(base)
    if literal:
        if value not in literal:
            raise ConfigError(flag_name(name), f"must be one of {list(literal)}, got {value!r}")
        return
    if expected is float:
        expected = (int, float)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(flag_name(name), f"expected {getattr(base, '__name__', base)}, got {value!r}")


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    if typing.get_origin(kind) in {typing.Union, types.UnionType}:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return kind, False


def _literal_choices(kind: Any) -> tuple[Any, ...]:
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else ()


def _type_hints(config_type: type) -> dict[str, Any]:
    return typing.get_type_hints(config_type)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def to_mapping(config: CommandConfig) -> dict[str, Any]:
    """The config as plain JSON values, readable back through ``--config`` (for child processes)."""
    return {
        f.name: list(value) if isinstance(value := getattr(config, f.name), tuple) else value
        for f in dataclasses.fields(config)
    }
