"""One container of a generated pod spec run as a local process: the stand-in for the kubelet (no
Kubernetes here), for the containers that run our workloads image.

What the container gets is what the spec says, with the differences a pod has from this machine made
explicit and nothing else changed:

- ``python -m workloads <command>``: ``python`` is this interpreter (the image's Python is this project's);
  any other command is refused;
- the pod's paths (its volumes' mount paths) are directories here, given as ``volumes``: every argument,
  environment value and exec-probe argument that names a path under a mount path names the directory;
- Secrets come from ``secrets`` (``{secret: {key: value}}``), as the kubelet would take them from the
  Secret objects: a ``secret`` volume of the pod (``pod_volumes``) mounted by the container becomes its
  files (with the volume's ``defaultMode``) in the mount's directory here; a Secret not given is an
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
    pod_volumes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The pod spec's ``volumes``: its ``secret`` volumes are written out for the containers mounting them."""

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
        self._write_secret_volumes(container)
        args = [self.local(arg) for arg in container.get("args", [])]
        return ChildCommand.start(
            command[-1], args, log_dir / f"{container['name']}.log", self.env(container)
        )

    def _write_secret_volumes(self, container: Mapping[str, Any]) -> None:
        volumes = {v["name"]: v for v in self.pod_volumes}
        for mount in container.get("volumeMounts", []):
            secret = volumes.get(mount["name"], {}).get("secret")
            if secret is None:
                continue
            directory = pathlib.Path(self.local(mount["mountPath"]))
            if str(directory) == mount["mountPath"]:
                raise PodSpecError(
                    f"{container['name']}: secret mount {mount['mountPath']} has no directory here"
                )
            if secret["secretName"] not in self.secrets:
                raise PodSpecError(f"{container['name']}: no Secret {secret['secretName']!r}")
            directory.mkdir(parents=True, exist_ok=True)
            for key, value in self.secrets[secret["secretName"]].items():
                (directory / key).write_text(value)
                (directory / key).chmod(secret.get("defaultMode", 0o644))

    def probe(self, container: Mapping[str, Any], probe: str) -> bool:
        """Whether the container's exec ``probe`` (e.g. ``startupProbe``) succeeds now."""
        argv = [self.local(arg) for arg in container[probe]["exec"]["command"]]
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0
