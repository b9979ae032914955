"""Promotion into TF Serving's layout, ``<base>/<model>/<version>/``, as the new highest version.

TF Serving watches ``<base>/<model>/`` and loads only directories whose names are integers; with the
default version policy it serves the highest. It must never see a half-written version:

- **Local disk (and POSIX shared filesystems):** the SavedModel is built under a non-numeric name
  (``.building-<id>``, which TF Serving ignores) in the same directory, made durable, then renamed to
  the next integer in one ``rename(2)``. A lock file serialises concurrent promoters, so two never
  pick the same number. Each build holds an ``flock`` on ``.building-<id>.lock`` for as long as it
  exists; a build whose promoter was killed keeps nothing locked, and the next promotion removes it
  once it is older than :data:`STALE_BUILD_AGE_S`.
- **Object stores (``s3://``, ...):** there is no rename, and a "directory" exists as soon as its first
  object does. The SavedModel is built locally and uploaded with ``saved_model.pb`` *last*, so a poll
  that sees the prefix early finds no ``saved_model.pb`` yet, and TF Serving retries a failed load
  (``--max_num_load_retries``, ``--load_retry_interval_micros``). To rule out a load attempt on a
  partial upload altogether,
  serve object-store models with a pinned version policy (``python -m workloads tfs-config
  --versions N``) and move the pin after ``promote`` returns.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pathlib
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

from workloads.core import fsutil, logs, storage
from workloads.serving import tfs_config

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^\d+$")
SAVED_MODEL_PB = "saved_model.pb"
Build = Callable[[pathlib.Path], None]
_BUILDING = ".building-"
_LOCK = ".lock"
# A build older than this whose lock is free is an interrupted promotion's leftover. Exporting a
# SavedModel takes seconds to minutes, so an hour is far beyond any real build; a live promoter's lock
# protects a build however old it is, and the age protects a build between the moment its lock file
# appears and the moment its promoter takes the lock (and on filesystems whose flock is not shared).
STALE_BUILD_AGE_S = 3600.0


def versions(model_url: str) -> list[int]:
    """The numeric versions under ``<base>/<model>/``, ascending."""
    if storage.is_local(model_url):
        root = storage.local_path(model_url)
        names = [p.name for p in root.iterdir() if p.is_dir()] if root.exists() else []
    else:
        fs, path = storage.filesystem(model_url)
        names = (
            [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)] if fs.exists(path) else []
        )
    return sorted(int(name) for name in names if _VERSION.match(name))


def promote(build: Build, base_url: str, model_name: str) -> tuple[int, str]:
    """Builds a SavedModel with ``build(directory)`` and publishes it as the next version.

    Returns ``(version, url)``. Nothing is visible under a numeric name until it is complete.
    ``model_name`` must be one safe path segment (:func:`workloads.serving.tfs_config.check_model_name`).
    """
    tfs_config.check_model_name(model_name)
    model_url = storage.join(base_url, model_name)
    if storage.is_local(model_url):
        version, url = _promote_local(build, storage.local_path(model_url))
    else:
        version, url = _promote_remote(build, model_url)
    log.info(
        "promoted model version %d", version, extra=logs.fields(version=version, url=url, model=model_name)
    )
    return version, url


@contextlib.contextmanager
def _locked(root: pathlib.Path) -> Iterator[None]:
    with (root / ".promote.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _build_lock(path: pathlib.Path, *, wait: bool) -> Iterator[bool]:
    """Holds the lock of one build; yields False (holding nothing) when ``wait`` is off and it is taken.

    The lock file is removed while still locked, so nobody is left waiting on a name that is gone.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = True
    except BlockingIOError:
        held = False
    try:
        yield held
    finally:
        if held:
            path.unlink(missing_ok=True)
        os.close(fd)


def remove_stale_builds(root: pathlib.Path, max_age_s: float = STALE_BUILD_AGE_S) -> list[str]:
    """Removes the ``.building-*`` leftovers of interrupted promotions under ``root``; returns their names.

    A build goes only when it is older than ``max_age_s`` (its directory's mtime) and its lock can be
    taken without waiting: a live promoter holds its build's lock until the build is renamed or removed.
    """
    now = time.time()
    removed = []
    for name in sorted({p.name.removesuffix(_LOCK) for p in root.glob(f"{_BUILDING}*")}):
        staging, lock_path = root / name, root / f"{name}{_LOCK}"
        try:
            modified = (staging if staging.exists() else lock_path).stat().st_mtime
        except FileNotFoundError:
            continue  # its promoter finished meanwhile
        if now - modified < max_age_s:
            continue
        with _build_lock(lock_path, wait=False) as held:
            if held:
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(name)
    if removed:
        log.info(
            "removed %d stale build(s) of interrupted promotions: %s",
            len(removed),
            ", ".join(removed),
            extra=logs.fields(path=str(root), removed=removed),
        )
    return removed


def _promote_local(build: Build, root: pathlib.Path) -> tuple[int, str]:
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(root)
    name = f"{_BUILDING}{uuid.uuid4().hex[:12]}"
    staging = root / name
    with _build_lock(root / f"{name}{_LOCK}", wait=True):  # taken before the build exists
        try:
            build(staging)
            if not (staging / SAVED_MODEL_PB).exists():
                raise RuntimeError(f"the export wrote no {SAVED_MODEL_PB}")
            for path in staging.rglob("*"):
                if path.is_file():
                    with path.open("rb") as handle:
                        os.fsync(handle.fileno())
            with _locked(root):
                version = (versions(str(root)) or [0])[-1] + 1
                target = root / str(version)
                os.rename(staging, target)
                fsutil.fsync_dir(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return version, str(target)


def _promote_remote(build: Build, model_url: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="mlstack-promote-") as tmp:
        staging = pathlib.Path(tmp) / "model"
        build(staging)
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        if staging / SAVED_MODEL_PB not in files:
            raise RuntimeError(f"the export wrote no {SAVED_MODEL_PB}")
        version = (versions(model_url) or [0])[-1] + 1
        target = storage.join(model_url, str(version))
        files.sort(key=lambda p: p.name == SAVED_MODEL_PB)  # the graph last: TF Serving needs it to load
        for path in files:
            storage.upload_file(path, storage.join(target, str(path.relative_to(staging))))
    return version, target
