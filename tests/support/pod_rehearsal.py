"""One container of a generated pod spec run as a local process: the stand-in for the kubelet (no
Kubernetes here), for the containers that run our workloads image.

What the container gets is what the spec says, with the differences a pod has from this machine made
explicit and nothing else changed:

- ``python -m workloads <command>``: ``python`` is this interpreter (the image's Python is this project's);
  any other command is refused;
- the pod's paths (its volumes' mount paths) are directories here, given as ``volumes``: every argument,
  environment value and exec-probe argument that names a path under a mount path names the directory;
- Secrets come from ``secrets`` (``{secret: {key: value}}``), ConfigMaps from ``config_maps``, as the
  kubelet would take them from the objects: a ``secret`` or ``configMap`` volume of the pod
  (``pod_volumes``) mounted by the container becomes its files (the volume's ``items`` if it lists any,
  with its ``defaultMode``) in the mount's directory here; an object or listed key not given is an
  error, like a pod stuck in ContainerCreating. Env from a Secret is refused (the project mounts them).
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
from collections.abc import Mapping
from typing import Any

from workloads.serving.dev.process import ChildCommand

WORKLOADS = ["python", "-m", "workloads"]


class PodSpecError(AssertionError):
    """The container asks for something a pod would not get (or this stand-in cannot give)."""


@dataclasses.dataclass(frozen=True)
class LocalPod:
    volumes: Mapping[str, pathlib.Path]
    """Pod path (a mount path) -> the directory standing in for it."""
    secrets: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    config_maps: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    pod_volumes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The pod spec's ``volumes``: its ``secret`` and ``configMap`` volumes are written out for the containers
    mounting them."""

    def local(self, value: str) -> str:
        """``value`` with a pod path under a mount path replaced by its directory here."""
        for mount in sorted(self.volumes, key=len, reverse=True):
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return str(self.volumes[mount]) + value[len(mount.rstrip("/")) :]
        return value

    def env(self, container: Mapping[str, Any]) -> dict[str, str]:
        return {item["name"]: self._value(item) for item in container.get("env", [])}

    def _value(self, item: Mapping[str, Any]) -> str:
        if "value" not in item:
            raise PodSpecError(f"env {item['name']}: only plain values are rehearsed (secrets: as volumes)")
        return self.local(item["value"])

    def start(self, container: Mapping[str, Any], log_dir: pathlib.Path) -> ChildCommand:
        """The container's ``python -m workloads`` command, running."""
        command = list(container["command"])
        if command[: len(WORKLOADS)] != WORKLOADS or len(command) != len(WORKLOADS) + 1:
            raise PodSpecError(
                f"{container['name']}: command {command}: only `python -m workloads <cmd>` runs here"
            )
        for directory in self.volumes.values():
            directory.mkdir(parents=True, exist_ok=True)
        self.mount(container)
        args = [self.local(arg) for arg in container.get("args", [])]
        return ChildCommand.start(
            command[-1], args, log_dir / f"{container['name']}.log", self.env(container)
        )

    def mount(self, container: Mapping[str, Any]) -> None:
        """Writes the files of the container's Secret and ConfigMap volumes (``start`` does it first)."""
        volumes = {v["name"]: v for v in self.pod_volumes}
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            if "secret" in volume:
                source, name, kind = volume["secret"], volume["secret"]["secretName"], "Secret"
                objects = self.secrets
            elif "configMap" in volume:
                source, name, kind = volume["configMap"], volume["configMap"]["name"], "ConfigMap"
                objects = self.config_maps
            else:
                continue
            directory = pathlib.Path(self.local(mount["mountPath"]))
            if str(directory) == mount["mountPath"]:
                raise PodSpecError(
                    f"{container['name']}: {kind} mount {mount['mountPath']} has no directory here"
                )
            if name not in objects:
                raise PodSpecError(f"{container['name']}: no {kind} {name!r}")
            data = objects[name]
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            directory.mkdir(parents=True, exist_ok=True)
            for item in items:
                if item["key"] not in data:
                    raise PodSpecError(f"{container['name']}: {kind} {name!r} has no key {item['key']!r}")
                (directory / item["path"]).write_text(data[item["key"]])
                (directory / item["path"]).chmod(item.get("mode", source.get("defaultMode", 0o644)))

    def probe(self, container: Mapping[str, Any], probe: str) -> bool:
        """Whether the container's exec ``probe`` (e.g. ``startupProbe``) succeeds now."""
        argv = [self.local(arg) for arg in container[probe]["exec"]["command"]]
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0
