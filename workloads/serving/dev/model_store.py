"""Which model versions the development server has loaded, and how they change over time.

Follows TF Serving's rules:

- a version is a child directory of the model's base path whose name is a non-negative integer
  (``3/``); anything else (``3.tmp/``, ``.incoming-3/``, files) is ignored, so an exporter that writes
  to a temporary name and renames it is picked up only when complete;
- the version policy chooses the versions to serve: the ``num_latest`` highest, or pinned versions;
- the base path is polled; a new version is loaded *before* the versions it replaces are unloaded
  (no moment without a model), and a version that fails to load is retried
  ``max_num_load_retries`` times while the previous versions keep serving;
- states go START -> LOADING -> AVAILABLE -> UNLOADING -> END, and END stays in the status list;
- labels (``stable``, ``canary``) name pinned versions; an unknown label is ``INVALID_ARGUMENT``.

Base paths are local directories or any fsspec URL (``s3://``...); remote versions are copied to a
local cache before loading.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence

from workloads.core import logs, storage
from workloads.serving.codes import Code, invalid_argument, not_found
from workloads.serving.dev import savedmodel
from workloads.serving.dev.savedmodel import LoadedModel
from workloads.serving.tfs_config import ServedModel

log = logging.getLogger(__name__)
VERSION_DIR = re.compile(r"^[0-9]+$")
INT64_MAX = 2**63 - 1
Loader = Callable[[str, int, str], LoadedModel]


@dataclasses.dataclass
class VersionRecord:
    version: int
    state: str = "START"
    error_code: Code = Code.OK
    error_message: str = ""
    failures: int = 0
    model: LoadedModel | None = None
    local_copy: str | None = None


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: Code
    error_message: str


class _Model:
    def __init__(self, config: ServedModel) -> None:
        self.config = config
        self.versions: dict[int, VersionRecord] = {}


def discover_versions(base_path: str) -> tuple[object, dict[int, str]]:
    """(filesystem, {version: path}) for the version directories under ``base_path``."""
    fs, root = storage.filesystem(base_path)  # an unreachable store is one StorageError line
    fs.invalidate_cache(root)
    try:
        entries = fs.ls(root, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return fs, {}
    versions = {}
    for entry in entries:
        basename = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") == "directory" and VERSION_DIR.match(basename) and int(basename) <= INT64_MAX:
            versions[int(basename)] = entry["name"]
    return fs, versions


def aspired_versions(config: ServedModel, on_disk: set[int]) -> set[int]:
    if config.versions:
        return set(config.versions) & on_disk
    return set(sorted(on_disk)[-config.num_latest :])


class ModelManager:
    """Thread-safe view of the loaded versions; :meth:`poll` (one thread) changes it."""

    def __init__(
        self,
        configs: Sequence[ServedModel],
        *,
        loader: Loader = savedmodel.load,
        max_num_load_retries: int = 5,
    ) -> None:
        self._loader = loader
        self._max_retries = max_num_load_retries
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.set_config(configs)

    # Configuration and polling (the poll thread).
    def set_config(self, configs: Sequence[ServedModel]) -> None:
        """Adopts a new model list; models no longer listed are unloaded at once."""
        with self._lock:
            removed = [m for name, m in self._models.items() if name not in {c.name for c in configs}]
            for config in configs:
                if config.name in self._models:
                    self._models[config.name].config = config
                else:
                    self._models[config.name] = _Model(config)
            for model in removed:
                del self._models[model.config.name]
        for model in removed:
            for record in model.versions.values():
                self._unload(model.config.name, record)

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def poll(self) -> None:
        """One pass over every model's base path: load what the policy wants, then unload the rest."""
        with self._lock:
            models = list(self._models.values())
        for model in models:
            try:
                fs, on_disk = discover_versions(model.config.base_path)
            except Exception as error:  # storage hiccup: keep serving what is loaded
                log.warning(
                    "cannot list %s: %s",
                    model.config.base_path,
                    error,
                    extra=logs.fields(model=model.config.name),
                )
                continue
            self._converge(model, fs, on_disk)

    def _converge(self, model: _Model, fs: object, on_disk: dict[int, str]) -> None:
        name = model.config.name
        wanted = aspired_versions(model.config, set(on_disk))
        if not on_disk:
            log.debug("no versions of %s under %s", name, model.config.base_path)
        for version in sorted(wanted, reverse=True):
            record = model.versions.get(version)
            if record is not None and (record.state == "AVAILABLE" or record.error_code != Code.OK):
                continue  # loaded, or given up on (TF Serving does not retry a version in END)
            if record is None or record.state == "END":
                record = VersionRecord(version)
                with self._lock:
                    model.versions[version] = record
            self._load(name, record, fs, on_disk[version])
        serving_wanted = any(model.versions[v].state == "AVAILABLE" for v in wanted if v in model.versions)
        for record in list(model.versions.values()):
            if record.version in wanted:
                continue
            if record.state == "LOADING":  # its directory vanished or the policy changed while retrying
                with self._lock:
                    record.state = "END"
            elif record.state == "AVAILABLE" and (serving_wanted or not wanted):
                self._unload(name, record)

    def _load(self, name: str, record: VersionRecord, fs: object, path: str) -> None:
        with self._lock:
            record.state = "LOADING"
        log.info("loading %s version %d from %s", name, record.version, path, extra=logs.fields(model=name))
        copy_dir = None
        try:
            if _is_local(fs):
                local = path
            else:
                copy_dir = tempfile.mkdtemp(prefix=f"mlstack-serve-dev-{name}-{record.version}-")
                local = f"{copy_dir}/{record.version}"
                fs.get(path.rstrip("/") + "/", local, recursive=True)
            loaded = self._loader(name, record.version, local)
        except Exception as error:
            if copy_dir is not None:
                shutil.rmtree(copy_dir, ignore_errors=True)
            record.failures += 1
            reason = (
                f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            )
            gave_up = record.failures > self._max_retries
            log.warning(
                "loading %s version %d failed (attempt %d of %d): %s",
                name,
                record.version,
                record.failures,
                self._max_retries + 1,
                reason,
                extra=logs.fields(model=name, version=record.version),
            )
            with self._lock:
                if gave_up:
                    record.state, record.error_code = "END", Code.UNKNOWN
                record.error_message = reason
            return
        with self._lock:
            record.model, record.local_copy = loaded, copy_dir
            record.state, record.error_code, record.error_message = "AVAILABLE", Code.OK, ""
        log.info(
            "serving %s version %d",
            name,
            record.version,
            extra=logs.fields(model=name, version=record.version),
        )

    def _unload(self, name: str, record: VersionRecord) -> None:
        with self._lock:
            if record.state != "AVAILABLE":
                record.state = "END"
                return
            record.state = "UNLOADING"
            record.model = None  # requests still running hold their own reference and finish
            local, record.local_copy = record.local_copy, None
            record.state = "END"
        if local:
            shutil.rmtree(local, ignore_errors=True)
        log.info(
            "unloaded %s version %d",
            name,
            record.version,
            extra=logs.fields(model=name, version=record.version),
        )

    def start(
        self,
        poll_interval_s: float,
        reload_config: Callable[[], Sequence[ServedModel] | None] | None = None,
        config_interval_s: float = 0,
    ) -> None:
        """Polls in a background thread; ``reload_config`` returns a new model list or None."""

        def loop() -> None:
            next_config = config_interval_s
            elapsed = 0.0
            while not self._stop.wait(poll_interval_s):
                elapsed += poll_interval_s
                if reload_config and config_interval_s > 0 and elapsed >= next_config:
                    next_config = elapsed + config_interval_s
                    new = reload_config()
                    if new is not None:
                        self.set_config(new)
                try:
                    self.poll()
                except Exception:
                    log.exception("polling the model base paths failed; retrying next interval")

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.set_config([])

    # Lookups (request threads).
    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> LoadedModel:
        """The loaded version a request asks for: latest, a number, or a label."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise not_found(f"Servable not found for request: Latest({name})")
            if label is not None:
                version = self._label_version(model, label)
            if version is None:
                available = [r for r in model.versions.values() if r.state == "AVAILABLE"]
                if not available:
                    raise not_found(f"Servable not found for request: Latest({name})")
                return max(available, key=lambda r: r.version).model  # type: ignore[return-value]
            record = model.versions.get(version)
            if record is None or record.state != "AVAILABLE":
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            return record.model  # type: ignore[return-value]

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        with self._lock:
            model = self._models.get(name)
            if model is None or not model.versions:
                raise not_found(f"Could not find any versions of model {name}")
            if label is not None:
                version = self._label_version(model, label)
            records = sorted(model.versions.values(), key=lambda r: -r.version)
            if version is not None:
                records = [r for r in records if r.version == version]
                if not records:
                    raise not_found(f"Could not find version {version} of model {name}")
            return [VersionStatus(r.version, r.state, r.error_code, r.error_message) for r in records]

    def _label_version(self, model: _Model, label: str) -> int:
        labels = dict(model.config.labels)
        if label not in labels:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return labels[label]

    def availability(self) -> dict[str, list[int]]:
        """Model name -> AVAILABLE versions, for logs and readiness."""
        with self._lock:
            return {
                name: sorted(r.version for r in m.versions.values() if r.state == "AVAILABLE")
                for name, m in self._models.items()
            }


def _is_local(fs: object) -> bool:
    protocol = getattr(fs, "protocol", "")
    protocols = protocol if isinstance(protocol, tuple | list) else (protocol,)
    return "file" in protocols or "local" in protocols
