"""Checkpoints that are committed atomically and found again on restart, for any framework.

Layout of a checkpoint directory (local path or fsspec URL)::

    latest.json            the commit point: {"step", "epoch", "batch", "path", "written_at", ...}
    step-000000120/        one checkpoint: the framework's files plus state.json
    .staging-<id>/         a checkpoint being written (local disk only; removed on failure)
    superseded/            latest.json and step-*/ of an earlier run that this one could not resume

Saving writes the framework's files into a staging directory (local disk: next to the checkpoints;
remote: a local temporary directory), then makes them visible under ``step-N/`` (local: one rename;
object stores: uploaded file by file, which is safe because nothing points there yet), and only then
rewrites ``latest.json``. A write that fails at any point leaves ``latest.json`` pointing at the
previous checkpoint, which still loads; the partial files are removed. Old checkpoints beyond
``keep`` are deleted after the commit.

The framework decides *what* goes in (model, optimizer, RNG state); this module decides *how* it is
committed and which one is current. The data position (epoch, batch index inside the epoch) and the
global step are part of every checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from workloads.core import fsutil, logs, storage
from workloads.core.errors import CheckpointError

log = logging.getLogger(__name__)

LATEST = "latest.json"
STATE = "state.json"
SUPERSEDED = "superseded"
WritePayload = Callable[[pathlib.Path], None]


@dataclasses.dataclass(frozen=True)
class CheckpointState:
    """Where training was when the checkpoint was taken."""

    step: int
    epoch: int
    batch: int
    path: str  # directory name under the checkpoint directory
    written_at: float
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)


def step_dir_name(step: int) -> str:
    return f"step-{step:09d}"


class CheckpointStore:
    """The checkpoints of one training run under ``url``."""

    def __init__(self, url: str, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.url = url
        self.keep = keep
        self.local = storage.is_local(url)

    def latest(self) -> CheckpointState | None:
        """The committed checkpoint, or None for a fresh start."""
        latest_url = storage.join(self.url, LATEST)
        try:
            raw = storage.read_bytes(latest_url)
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            return CheckpointState(
                step=int(data["step"]),
                epoch=int(data["epoch"]),
                batch=int(data["batch"]),
                path=str(data["path"]),
                written_at=float(data["written_at"]),
                extra=dict(data.get("extra", {})),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"{latest_url} is not a checkpoint pointer ({error}); move the directory aside to start fresh"
            ) from None

    def save(
        self, step: int, epoch: int, batch: int, write: WritePayload, extra: dict | None = None
    ) -> CheckpointState:
        """Writes and commits a checkpoint (chief only). ``write(directory)`` puts the framework's files there."""
        state = CheckpointState(step, epoch, batch, step_dir_name(step), time.time(), dict(extra or {}))
        previous = self.latest()
        where = storage.join(self.url, state.path)
        try:
            if self.local:
                self._save_local(state, write)
            else:
                self._save_remote(state, write)
        except Exception as error:
            kept = (
                f"the previous checkpoint (step {previous.step}) is intact"
                if previous
                else "no earlier checkpoint"
            )
            raise CheckpointError(
                f"checkpoint for step {step} could not be written to {where}: {error}; {kept}"
            ) from error
        log.info(
            "checkpoint saved",
            extra=logs.fields(step=step, epoch=epoch, batch=batch, path=where),
        )
        self._prune(state)
        return state

    def _save_local(self, state: CheckpointState, write: WritePayload) -> None:
        root = storage.local_path(self.url)
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".staging-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            write(staging)
            fsutil.atomic_write_text(staging / STATE, state.to_json())
            _fsync_tree(staging)
            final = root / state.path
            if final.exists():  # the same step saved again after a restart: replace it
                shutil.rmtree(final)
            os.rename(staging, final)
            fsutil.fsync_dir(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsutil.atomic_write_text(root / LATEST, state.to_json())

    def _save_remote(self, state: CheckpointState, write: WritePayload) -> None:
        with tempfile.TemporaryDirectory(prefix="mlstack-ckpt-") as tmp:
            staging = pathlib.Path(tmp)
            write(staging)
            (staging / STATE).write_text(state.to_json())
            target = storage.join(self.url, state.path)
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                storage.upload_file(path, storage.join(target, str(path.relative_to(staging))))
        storage.publish_bytes(storage.join(self.url, LATEST), state.to_json().encode())

    def save_scratch(self, write: WritePayload) -> None:
        """What a non-chief worker does when the chief saves (TensorFlow's multi-worker guidance).

        Saving may run collective operations, so every worker must call the save; only the chief's
        copy is kept. The others write into a private temporary directory, deleted right after.
        """
        with tempfile.TemporaryDirectory(prefix="mlstack-ckpt-scratch-") as tmp:
            write(pathlib.Path(tmp))

    @contextlib.contextmanager
    def open(self, state: CheckpointState) -> Iterator[pathlib.Path]:
        """A local directory holding the checkpoint's files (downloaded first when remote)."""
        if self.local:
            path = storage.local_path(self.url) / state.path
            if not path.is_dir():
                raise CheckpointError(f"{LATEST} points at {path}, which does not exist")
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="mlstack-ckpt-restore-") as tmp:
            target = pathlib.Path(tmp) / "checkpoint"
            try:
                storage.download_tree(storage.join(self.url, state.path), target)
            except FileNotFoundError:
                raise CheckpointError(
                    f"{LATEST} points at {storage.join(self.url, state.path)}, which does not exist"
                ) from None
            yield target

    def _prune(self, current: CheckpointState) -> None:
        names = sorted(self._step_dirs())
        for name in names[: max(0, len(names) - self.keep)]:
            if name == current.path:
                continue
            target = storage.join(self.url, name)
            try:
                if self.local:
                    shutil.rmtree(storage.local_path(target))
                else:
                    fs, path = storage.filesystem(target)
                    fs.rm(path, recursive=True)
            except OSError as error:  # pruning is housekeeping: never fail training for it
                log.warning("could not delete old checkpoint %s: %s", target, error)

    def _step_dirs(self) -> list[str]:
        if self.local:
            root = storage.local_path(self.url)
            return [p.name for p in root.glob("step-*") if p.is_dir()] if root.exists() else []
        fs, path = storage.filesystem(self.url)
        try:
            listed = fs.ls(path, detail=False)
        except FileNotFoundError:  # no checkpoint yet (HDFS says so; object stores list nothing)
            return []
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in listed if "/step-" in p]

    def set_aside(self) -> str | None:
        """Moves ``latest.json`` and every step directory into ``superseded/`` (chief only, before its
        first save), replacing what an earlier call left there; returns where they went, or None when
        there was nothing to move.

        ``latest.json`` moves first: from then on no worker resumes any of them. A writer killed midway
        leaves step directories without a pointer, which the next fresh start sets aside in turn. Kept,
        not deleted, so a person can move them back; one set at a time bounds the space they take.
        """
        names = sorted(self._step_dirs())
        if storage.exists(storage.join(self.url, LATEST)):
            names.insert(0, LATEST)
        if not names:
            return None
        target = storage.join(self.url, SUPERSEDED)
        try:
            if self.local:
                root, aside = storage.local_path(self.url), storage.local_path(target)
                shutil.rmtree(aside, ignore_errors=True)
                aside.mkdir()
                for name in names:
                    os.rename(root / name, aside / name)
                fsutil.fsync_dir(root)
            else:
                fs, path = storage.filesystem(self.url)
                path = path.rstrip("/")
                if fs.exists(f"{path}/{SUPERSEDED}"):
                    fs.rm(f"{path}/{SUPERSEDED}", recursive=True)
                for name in names:  # object stores have no rename: copy each file, then delete
                    files = [f"{path}/{name}"] if name == LATEST else fs.find(f"{path}/{name}")
                    for file in files:
                        fs.copy(file, f"{path}/{SUPERSEDED}/{file[len(path) + 1 :]}")
                    fs.rm(files)
        except OSError as error:
            raise CheckpointError(
                f"could not move the checkpoints in {self.url} aside to {target}: {error}; "
                "move them yourself or use another --checkpoint-dir"
            ) from error
        return target

    def remove_stale_staging(self) -> None:
        """Deletes staging directories a killed writer left behind (chief, at start-up)."""
        if self.local and storage.local_path(self.url).exists():
            for stale in storage.local_path(self.url).glob(".staging-*"):
                shutil.rmtree(stale, ignore_errors=True)


def _fsync_tree(root: pathlib.Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    fsutil.fsync_dir(root)
