"""Reading values with errors that name the key: :class:`Fields` reads one object of the stack file (the
top level or a nested one), and the readers below handle what several sections share."""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from infra.config import checks
from infra.config.keys import NAMESPACE, REQUIRED, ConfigError
from infra.config.settings import Resources

Check = Callable[[str], str | None]


class Fields:
    """Reads the fields of one object (the top level or a nested one), naming each by its full key."""

    def __init__(self, values: Mapping[str, Any], path: str) -> None:
        self._values = values
        self._path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if not self._path.endswith(":") else f"{self._path}{name}"

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.key(name)}: {message}")

    def has(self, name: str) -> bool:
        return name in self._values

    def given(self, name: str) -> bool:
        """Whether the setting has a value other than an empty one (Pulumi.yaml's defaults are empty)."""
        return bool(self._values.get(name))

    def _get(self, name: str, default: Any) -> Any:
        self._seen.add(name)
        if name in self._values and self._values[name] is not None:
            return self._values[name]
        if default is REQUIRED:
            raise self.fail(name, "missing; this setting is required")
        return default

    def string(
        self,
        name: str,
        default: Any = REQUIRED,
        *,
        allowed: Iterable[str] | None = None,
        check: Check | None = None,
    ) -> str:
        value = self._get(name, default)
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {describe(value)}")
        if allowed is not None:
            allowed = tuple(allowed)
            if value not in allowed:
                raise self.fail(name, f"{value!r} is not allowed; allowed values: {', '.join(allowed)}")
        if check is not None and (problem := check(value)):
            raise self.fail(name, problem)
        return value

    def integer(self, name: str, default: Any = REQUIRED, *, minimum: int | None = None) -> int:
        value = self._get(name, default)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {describe(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {value}")
        return value

    def number(self, name: str, default: Any = REQUIRED, *, positive: bool = False) -> float:
        value = self._get(name, default)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"expected a number, got {describe(value)}")
        if positive and value <= 0:
            raise self.fail(name, f"must be greater than 0, got {value}")
        return float(value)

    def boolean(self, name: str, default: Any = REQUIRED) -> bool:
        value = self._get(name, default)
        if isinstance(value, str) and value in ("true", "false"):
            value = value == "true"
        if not isinstance(value, bool):
            raise self.fail(name, f"expected true or false, got {describe(value)}")
        return value

    def strings(self, name: str, default: Any = REQUIRED, *, check: Check | None = None) -> tuple[str, ...]:
        value = self._get(name, default)
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise self.fail(name, f"expected a list of strings, got {describe(value)}")
        for index, item in enumerate(value):
            if check is not None and (problem := check(item)):
                raise self.fail(f"{name}[{index}]", problem)
        return tuple(value)

    def integers(self, name: str, default: Any = REQUIRED, *, minimum: int | None = None) -> tuple[int, ...]:
        value = self._get(name, default)
        if not isinstance(value, list | tuple):
            raise self.fail(name, f"expected a list of integers, got {describe(value)}")
        items = Fields({f"{name}[{i}]": item for i, item in enumerate(value)}, self._path)
        return tuple(items.integer(f"{name}[{i}]", minimum=minimum) for i in range(len(value)))

    def numbers(self, name: str, default: Any = REQUIRED, *, positive: bool = False) -> tuple[float, ...]:
        value = self._get(name, default)
        if not isinstance(value, list | tuple):
            raise self.fail(name, f"expected a list of numbers, got {describe(value)}")
        items = Fields({f"{name}[{i}]": item for i, item in enumerate(value)}, self._path)
        return tuple(items.number(f"{name}[{i}]", positive=positive) for i in range(len(value)))

    def names(self) -> list[str]:
        """The keys of a free-form object (such as a map of labels)."""
        return list(self._values)

    def skip(self, name: str) -> None:
        """Marks an optional setting as handled when its absence means 'use the default'."""
        self._seen.add(name)

    def obj(self, name: str, default: Any = REQUIRED) -> Fields:
        value = self._get(name, default)
        if not isinstance(value, Mapping):
            raise self.fail(name, f"expected an object, got {describe(value)}")
        return Fields(value, self.key(name))

    def obj_list(self, name: str, default: Any = REQUIRED) -> list[Fields]:
        value = self._get(name, default)
        if not isinstance(value, list | tuple):
            raise self.fail(name, f"expected a list of objects, got {describe(value)}")
        items = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.fail(f"{name}[{index}]", f"expected an object, got {describe(item)}")
            items.append(Fields(item, f"{self.key(name)}[{index}]"))
        return items

    def refuse_renamed(self, renamed: Mapping[str, str], why: str) -> None:
        """Refuses settings under an old name, naming the new one: read as unknown keys they would only
        get a spelling hint, and their values must not fall back to a default unnoticed."""
        for old, new in renamed.items():
            if old in self._values:
                new_key = self.key(new).removeprefix(f"{NAMESPACE}:")
                raise self.fail(old, f"renamed to {new_key} ({why}); rename the key in your stack file")

    def done(self) -> None:
        """Rejects keys nobody read: a typo must not silently fall back to a default."""
        known = self._seen
        for name in self._values:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
                )
                raise self.fail(name, f"unknown setting{hint}")


def describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def resources(fields: Fields, name: str, default: Resources) -> Resources:
    """A container's ``cpu`` and ``memory`` (each defaulting to ``default``'s)."""
    if not fields.has(name):
        fields.skip(name)
        return default
    obj = fields.obj(name)
    result = Resources(
        cpu=obj.string("cpu", default.cpu, check=checks.quantity),
        memory=obj.string("memory", default.memory, check=checks.quantity),
    )
    obj.done()
    return result


def unique(fields: Fields, name: str, names: list[str]) -> None:
    """The items of the list ``name`` must have distinct names."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise fields.fail(name, f"names must be unique; repeated: {', '.join(duplicates)}")
