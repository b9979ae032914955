"""URLs for every reader and writer: local paths, ``s3://``, ``hdfs://``, ``webhdfs://`` through fsspec.

One place decides how a URL becomes a filesystem, so the S3 endpoint (``AWS_ENDPOINT_URL``, the
variable botocore itself reads; ``--s3-endpoint`` sets it) and the way a file is *published* (made
visible to readers all at once) are the same for shards, checkpoints and models:

- local disk: write a temporary file beside the target, fsync, ``os.replace`` (atomic rename);
- object stores (``s3://``, ``gs://``, ``memory://``): one PUT, which replaces the object whole;
- other filesystems (HDFS): write a temporary file, then rename it over the target. HDFS refuses to
  rename onto an existing file, so the old file is removed first: for that instant readers find no
  file and must retry; they never see a partial one.

Failures to reach the storage are reported the same way for every scheme: as a
:class:`~workloads.core.errors.StorageError` that names the URL, says what went wrong in one line and
which setting (or package) to check. That covers a missing client library (``s3fs`` for ``s3://``,
``pyarrow`` for ``hdfs://``), a missing JVM or ``libhdfs``, an endpoint that does not answer, missing or
refused credentials and an unwritable local path. The functions here and every method of the
filesystem :func:`filesystem` returns raise it; a file that does not exist is not a storage failure and
stays a :class:`FileNotFoundError`, which callers rely on.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import pathlib
import posixpath
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from workloads.core import fsutil
from workloads.core.errors import StorageError

if TYPE_CHECKING:
    import fsspec

S3_ENDPOINT_ENV = "AWS_ENDPOINT_URL"
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "memory", "abfs", "az"}
# The package that provides each scheme's fsspec implementation (named when it is not installed).
_CLIENT_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "hdfs": "pyarrow",
    "webhdfs": "requests",
    "abfs": "adlfs",
    "az": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
}
# How S3 clients connect. botocore's defaults are its "legacy" retry mode (5 attempts, exponential
# backoff) and a 60 s connect timeout, so an endpoint that refuses connections took ~13 s to report.
# "standard" mode with 3 attempts is what AWS's SDKs default to now: it still retries throttling
# (503 SlowDown) and transient errors, with at most ~3 s of jittered backoff in all. 5 s to connect
# lets the kernel retransmit a lost SYN twice (after 1 s and 3 s) while an endpoint that drops packets
# fails within ~20 s, not minutes. Reads keep botocore's 60 s timeout: a large shard may be slow.
# AWS_MAX_ATTEMPTS / AWS_RETRY_MODE, botocore's own variables, still win when set.
S3_CONNECT_TIMEOUT_S = 5
S3_MAX_ATTEMPTS = 3
# Exceptions from these packages are failures of the storage, whatever their type.
_CLIENT_MODULES = {
    "botocore",
    "aiobotocore",
    "aiohttp",
    "requests",
    "urllib3",
    "s3fs",
    "gcsfs",
    "adlfs",
    "pyarrow",
}
# Local errors that mean "this path cannot be used" rather than "this file does not exist".
_LOCAL_ERRNOS = {
    errno.EACCES: "check that this user may read and write it, or use another path",
    errno.EPERM: "check that this user may read and write it, or use another path",
    errno.EROFS: "the filesystem is read-only: use a path on a writable one",
    errno.ENOSPC: "the disk is full: free space or use a path on another disk",
    errno.EDQUOT: "the disk quota is used up: free space or use another path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: use another path",
    errno.EIO: "the disk reported an I/O error: check the device",
}


def scheme(url: str) -> str:
    """``s3``, ``hdfs``, ``webhdfs`` ...; ``file`` for a local path."""
    return url.split("://", 1)[0].lower() if "://" in url else "file"


@contextlib.contextmanager
def reporting(url: str) -> Iterator[None]:
    """Inside, a failure to reach or use the storage behind ``url`` is raised as :class:`StorageError`.

    Everything else (a missing file's :class:`FileNotFoundError`, a programming error) passes unchanged.
    """
    try:
        yield
    except Exception as error:
        translated = storage_error(url, error)
        if translated is None:
            raise
        raise translated from error


def storage_error(url: str, error: BaseException) -> StorageError | None:
    """``error`` as a :class:`StorageError` about ``url``, or None when it is not a storage failure."""
    if isinstance(error, StorageError | FileNotFoundError):
        return None
    kind = scheme(url)
    module = type(error).__module__.split(".", 1)[0]
    name = type(error).__name__
    text = _one_line(error, url)
    if isinstance(error, ImportError):
        package = _CLIENT_PACKAGES.get(kind, f"the fsspec implementation of {kind}://")
        return StorageError(
            url,
            f"no client for {kind}:// is installed ({text})",
            f"install {package} (pip install {package})",
        )
    if kind == "file":
        hint = _LOCAL_ERRNOS.get(getattr(error, "errno", None) or -1)
        return StorageError(url, text, hint) if isinstance(error, OSError) and hint else None
    if kind == "hdfs" and isinstance(error, OSError) and "Unable to load libjvm" in str(error):
        return StorageError(
            url,
            "no Java runtime: pyarrow could not load libjvm.so",
            "hdfs:// needs a JDK (set JAVA_HOME), Hadoop's libhdfs (set HADOOP_HOME or ARROW_LIBHDFS_DIR) "
            "and CLASSPATH=$(hadoop classpath --glob); or use webhdfs://",
        )
    if kind == "hdfs" and isinstance(error, OSError) and "Unable to load libhdfs" in str(error):
        return StorageError(
            url,
            "no libhdfs: pyarrow could not load Hadoop's libhdfs.so",
            "hdfs:// needs Hadoop's native library: set HADOOP_HOME (or ARROW_LIBHDFS_DIR to the folder "
            "of libhdfs.so) and CLASSPATH=$(hadoop classpath --glob); or use webhdfs://",
        )
    if name in {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return StorageError(
            url,
            f"no usable AWS credentials ({text})",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the job an IAM role",
        )
    if name == "NoRegionError":
        return StorageError(url, text, "set AWS_DEFAULT_REGION (or AWS_REGION)")
    if isinstance(error, PermissionError) or name == "ClientError":
        return StorageError(url, f"access refused ({text})", _access_hint(kind))
    if module in _CLIENT_MODULES or isinstance(error, OSError):
        return StorageError(url, text, _reach_hint(kind))
    return None


def _one_line(error: BaseException, url: str) -> str:
    """The error's message on one line (at most 200 characters), with the OS's reason when it is buried."""
    message = str(error).strip()
    text = message.splitlines()[0][:200] if message else type(error).__name__
    if isinstance(error, OSError) and error.strerror and error.filename:  # "[Errno 20] ...: 'path'"
        same = str(error.filename) in {url, url.removeprefix("file://")}
        return error.strerror if same else f"{error.strerror} ({error.filename})"
    reason = _os_reason(error)
    if type(error).__module__.startswith("requests") and reason:  # urllib3's retry story, then the reason
        host = re.search(r"host='([^']+)', port=(\d+)", message)
        return f"cannot connect{f' to {host[1]}:{host[2]}' if host else ''} ({reason})"
    return f"{text} ({reason})" if reason and reason.lower() not in text.lower() else text


def _os_reason(error: BaseException) -> str | None:
    """``Connection refused``, ``Permission denied`` ...: the errno under the error or its causes."""
    seen: BaseException | None = error
    for _ in range(8):  # the chain of a client library's wrappers is short; never loop forever
        if seen is None:
            return None
        if isinstance(seen, OSError) and isinstance(seen.errno, int) and seen.errno > 0:
            return os.strerror(seen.errno)
        found = re.search(r"\[Errno (\d+)\]", str(seen))
        if found:
            return os.strerror(int(found[1]))
        seen = seen.__cause__ or seen.__context__
    return None


def _s3_endpoint_hint() -> str:
    endpoint = os.environ.get(S3_ENDPOINT_ENV)
    now = f"now {endpoint}" if endpoint else "unset, so AWS itself"
    return f"check the S3 endpoint (--s3-endpoint or {S3_ENDPOINT_ENV}, {now}) and that it is reachable"


def _reach_hint(kind: str) -> str:
    if kind in {"s3", "s3a"}:
        return _s3_endpoint_hint()
    if kind == "webhdfs":
        return "check that the NameNode's WebHDFS address in the URL (host:port, 9870 by default) is up and reachable"
    if kind == "hdfs":
        return "check the NameNode host:port in the URL, JAVA_HOME, HADOOP_HOME and CLASSPATH"
    return f"check the URL and that the {kind}:// service is reachable"


def _access_hint(kind: str) -> str:
    if kind in {"s3", "s3a"}:
        return (
            "check the credentials in use (AWS_ACCESS_KEY_ID, AWS_PROFILE) and that they may access this "
            f"bucket; {_s3_endpoint_hint()}"
        )
    if kind in {"hdfs", "webhdfs"}:
        return "check the HDFS permissions of the path and the user it is accessed as (HADOOP_USER_NAME)"
    return f"check the credentials of {kind}:// and that they may access this path"


def _s3_client_config() -> dict[str, Any]:
    config: dict[str, Any] = {"connect_timeout": S3_CONNECT_TIMEOUT_S}
    if not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")):
        config["retries"] = {"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS}
    return config


class _Reporting:
    """A filesystem whose methods raise :class:`StorageError` for storage failures (see :func:`reporting`).

    Everything else is the wrapped fsspec filesystem's, except :meth:`exists`: fsspec answers False for
    *any* error, so an unreachable store looked like an empty one; here only a missing path is False.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, url: str) -> None:
        self._fs = fs
        self._url = url

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._fs, name)
        if name.startswith("_") or not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            with reporting(self._url):
                return value(*args, **kwargs)

        return call

    def exists(self, path: str, **kwargs: Any) -> bool:
        with reporting(self._url):
            try:
                self._fs.info(path, **kwargs)
            except (FileNotFoundError, NotADirectoryError):
                return False
            return True


def set_s3_endpoint(endpoint: str | None) -> None:
    """``--s3-endpoint``: exported so worker processes started from here use it as well."""
    if endpoint:
        os.environ[S3_ENDPOINT_ENV] = endpoint


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it; its methods raise :class:`StorageError`."""
    options: dict = {}
    protocol = scheme(url)
    endpoint = os.environ.get(S3_ENDPOINT_ENV)
    if protocol in {"s3", "s3a"}:
        options["config_kwargs"] = _s3_client_config()
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
    with reporting(url):
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(url, **options)
        except ValueError as error:
            if "not known" not in str(error):  # fsspec: "Protocol not known: ..."
                raise
            raise StorageError(
                url,
                f"no filesystem knows the scheme {protocol}://",
                "use a local path, s3://, hdfs:// or webhdfs://",
            ) from None
    return cast("fsspec.AbstractFileSystem", _Reporting(fs, url)), path


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
    """Whether ``url`` exists; False only when it does not, :class:`StorageError` when nobody can tell."""
    if is_local(url):
        with reporting(url):
            return local_path(url).exists()
    fs, path = filesystem(url)
    return fs.exists(path)


def read_bytes(url: str) -> bytes:
    if is_local(url):
        with reporting(url):
            return local_path(url).read_bytes()
    fs, path = filesystem(url)
    return fs.cat_file(path)


def publish_bytes(url: str, data: bytes) -> None:
    """Writes ``data`` to ``url`` so that readers see the old content or all of the new, never a part."""
    if is_local(url):
        with reporting(url):
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
        with reporting(url):
            _copy_local(local, local_path(url))
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


def _copy_local(local: pathlib.Path, target: pathlib.Path) -> None:
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


def download_tree(url: str, destination: pathlib.Path) -> None:
    """Copies every file under ``url`` into ``destination`` (which must not exist yet)."""
    fs, path = filesystem(url)
    fs.get(path.rstrip("/") + "/", str(destination), recursive=True)
