"""URLs for every reader and writer: local paths, ``s3://``, ``hdfs://``, ``webhdfs://`` through fsspec.

One place decides how a URL becomes a filesystem, so the S3 endpoint (``AWS_ENDPOINT_URL``, the
variable botocore itself reads; ``--s3-endpoint`` sets it) and the way a file is *published* (made
visible to readers all at once) are the same for shards, checkpoints and models:

- local disk: write a temporary file beside the target, fsync, ``os.replace`` (atomic rename);
- object stores (``s3://``, ``gs://``, ``memory://``): one PUT, which replaces the object whole;
- other filesystems (HDFS): write a temporary file, then rename it over the target. HDFS refuses to
  rename onto an existing file, so the old file is removed first: for that instant readers find no
  file and must retry; they never see a partial one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import posixpath
import uuid
from typing import TYPE_CHECKING

from workloads.core import fsutil

if TYPE_CHECKING:
    import fsspec

S3_ENDPOINT_ENV = "AWS_ENDPOINT_URL"
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "memory", "abfs", "az"}


def set_s3_endpoint(endpoint: str | None) -> None:
    """``--s3-endpoint``: exported so worker processes started from here use it as well."""
    if endpoint:
        os.environ[S3_ENDPOINT_ENV] = endpoint


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it."""
    import fsspec

    options: dict = {}
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    endpoint = os.environ.get(S3_ENDPOINT_ENV)
    if protocol in {"s3", "s3a"} and endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return fsspec.core.url_to_fs(url, **options)


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> pathlib.Path:
    return pathlib.Path(url.removeprefix("file://"))


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return any(p in _OBJECT_STORES for p in protocols)


def join(url: str, *parts: str) -> str:
    """Joins path parts onto a URL or local path with ``/``."""
    if is_local(url):
        return str(local_path(url).joinpath(*parts))
    return posixpath.join(url.rstrip("/"), *parts)


def exists(url: str) -> bool:
    if is_local(url):
        return local_path(url).exists()
    fs, path = filesystem(url)
    return fs.exists(path)


def read_bytes(url: str) -> bytes:
    if is_local(url):
        return local_path(url).read_bytes()
    fs, path = filesystem(url)
    return fs.cat_file(path)


def publish_bytes(url: str, data: bytes) -> None:
    """Writes ``data`` to ``url`` so that readers see the old content or all of the new, never a part."""
    if is_local(url):
        fsutil.atomic_write_bytes(local_path(url), data)
        return
    fs, path = filesystem(url)
    if is_object_store(fs):
        fs.pipe_file(path, data)
        return
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.pipe_file(temporary, data)
    try:
        if fs.exists(path):
            fs.rm_file(path)
        fs.mv(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.rm_file(temporary)
        raise


def upload_file(local: pathlib.Path, url: str) -> None:
    """Copies one local file to ``url`` (object stores: one PUT; HDFS: temporary name, then rename)."""
    if is_local(url):
        target = local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with local.open("rb") as src, temporary.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return
    fs, path = filesystem(url)
    if is_object_store(fs):
        fs.put_file(str(local), path)
        return
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.put_file(str(local), temporary)
    if fs.exists(path):
        fs.rm_file(path)
    fs.mv(temporary, path)


def download_tree(url: str, destination: pathlib.Path) -> None:
    """Copies every file under ``url`` into ``destination`` (which must not exist yet)."""
    fs, path = filesystem(url)
    fs.get(path.rstrip("/") + "/", str(destination), recursive=True)
