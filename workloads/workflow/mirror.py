"""A local mirror of a model's versions, for a stock TF Serving to serve whatever the model store is.

Stock ``tensorflow/serving`` reads neither ``s3://`` (gone since 2.7) nor ``hdfs://`` (needs a custom
build), so a sidecar runs :func:`mirror_forever` beside it: it watches ``<store>/<model>/`` and keeps
``<volume>/<model>/`` (a volume both containers mount) holding the same versions.

- A version appears in the volume whole or not at all: it is copied under ``.mirroring-<version>``
  (TF Serving loads only directories named by integers) and renamed into place in one ``rename(2)``.
- A version is copied only once the store holds its ``saved_model.pb``, which promotion writes last
  (``workloads.workflow.promote``): a promotion still uploading is left for the next poll.
- A version removed from the store (a rollback) is removed here too, renamed out of TF Serving's sight
  first; a version already mirrored is never copied again.
- An unreachable store, or a copy that fails half-way, is a warning; the next poll tries again and
  nothing half-copied stays.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import shutil
import threading
from collections.abc import Callable

from workloads.core import fsutil, logs, storage
from workloads.core.errors import WorkloadError
from workloads.workflow.promote import SAVED_MODEL_PB, versions

log = logging.getLogger(__name__)
_STAGING = ".mirroring-"
_LEAVING = ".removing-"


@dataclasses.dataclass(frozen=True)
class Changes:
    copied: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()


def local_versions(directory: pathlib.Path) -> list[int]:
    """The versions TF Serving sees in ``directory``."""
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def complete_versions(model_url: str) -> list[int]:
    """The store's versions whose ``saved_model.pb`` is there (promotion writes it last)."""
    return [v for v in versions(model_url) if storage.exists(storage.join(model_url, str(v), SAVED_MODEL_PB))]


def mirror_once(model_url: str, directory: pathlib.Path) -> Changes:
    """Brings ``directory`` to the store's complete versions; returns what changed."""
    directory.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(directory)
    wanted, present = set(complete_versions(model_url)), set(local_versions(directory))
    for version in sorted(wanted - present):
        _copy(model_url, directory, version)
    for version in sorted(present - wanted):
        _remove(directory, version)
    return Changes(tuple(sorted(wanted - present)), tuple(sorted(present - wanted)))


def _copy(model_url: str, directory: pathlib.Path, version: int) -> None:
    staging = directory / f"{_STAGING}{version}"
    try:
        storage.download_tree(storage.join(model_url, str(version)), staging)
        if not (staging / SAVED_MODEL_PB).is_file():
            raise WorkloadError(f"{storage.join(model_url, str(version))}: copied without {SAVED_MODEL_PB}")
        os.rename(staging, directory / str(version))
        fsutil.fsync_dir(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("version %d mirrored", version, extra=logs.fields(version=version, source=model_url))


def _remove(directory: pathlib.Path, version: int) -> None:
    leaving = directory / f"{_LEAVING}{version}"
    os.rename(directory / str(version), leaving)
    shutil.rmtree(leaving)
    log.info("version %d removed (gone from the store)", version, extra=logs.fields(version=version))


def _clean_leftovers(directory: pathlib.Path) -> None:
    """Copies and removals an earlier run left half-done (it was killed)."""
    for path in directory.iterdir():
        if path.name.startswith((_STAGING, _LEAVING)):
            shutil.rmtree(path, ignore_errors=True)


def mirror_forever(
    model_url: str,
    directory: pathlib.Path,
    interval_s: float,
    stop: threading.Event,
    on_poll: Callable[[Changes], None] | None = None,
) -> None:
    """Polls every ``interval_s`` until ``stop`` is set; a failed poll is a warning, not the end."""
    while not stop.is_set():
        try:
            changes = mirror_once(model_url, directory)
            if on_poll is not None:
                on_poll(changes)
        except (WorkloadError, OSError) as error:  # StorageError is both; a local volume raises OSError
            log.warning("mirroring %s failed (%s); retrying in %g s", model_url, error, interval_s)
        stop.wait(interval_s)
