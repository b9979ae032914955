"""URLs for every reader and writer: local paths, ``s3://``, ``hdfs://``, ``webhdfs://`` through fsspec.

One place decides how a URL becomes a filesystem, so the S3 endpoint (``AWS_ENDPOINT_URL``, the
variable botocore itself reads; ``--s3-endpoint`` sets it) and the way a file is *published* (made
visible to readers all at once) are the same for shards, checkpoints and models:

- local disk: write a temporary file beside the target, fsync, ``os.replace`` (atomic rename);
- object stores (``s3://``, ``gs://``, ``memory://``): one PUT, which replaces the object whole;
- HDFS (``hdfs://``, ``webhdfs://``): write a temporary file, then rename it over the target with
  HDFS's OVERWRITE rename, which replaces the target in one NameNode operation: readers find the old
  file or the new one, never none and never a part. (A plain HDFS rename refuses an existing target:
  hdfs-native raises FileExistsError, and WebHDFS answers ``{"boolean": false}``, which fsspec ignores.)
- any other filesystem: write a temporary file, remove the target, rename; for that instant readers
  find no file and must retry, but never see a partial one.

``hdfs://`` goes through hdfs-native, a client that speaks HDFS's RPC and data-transfer protocols
itself: no JVM, no libhdfs, no Hadoop install in the images. It reads ``HADOOP_CONF_DIR`` (or
``HADOOP_HOME/etc/hadoop``) when set, and acts as ``HADOOP_USER_NAME`` (else the local user), as Hadoop's
own clients do; ``webhdfs://`` is given the same user (unless the URL names one, ``webhdfs://user@host``)
rather than WebHDFS's anonymous ``dr.who``, which may write nowhere.

Failures to reach the storage are reported the same way for every scheme: as a
:class:`~workloads.core.errors.StorageError` that names the URL, says what went wrong in one line and
which setting (or package) to check. That covers a missing client library (``s3fs`` for ``s3://``,
``hdfs-native`` for ``hdfs://``), an endpoint or NameNode that does not answer, DataNodes that do not,
missing or refused credentials or HDFS permissions and an unwritable local path. The functions here and
every method of the filesystem :func:`filesystem` returns raise it; a file that does not exist is not a
storage failure and stays a :class:`FileNotFoundError`, which callers rely on.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import getpass
import os
import pathlib
import posixpath
import re
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit
from xml.etree import ElementTree

from workloads.core import fsutil
from workloads.core.errors import StorageError

if TYPE_CHECKING:
    import fsspec

S3_ENDPOINT_ENV = "AWS_ENDPOINT_URL"
# What a Secret of S3 credentials holds: the names boto3 reads from the environment, and the file names in
# the directory S3_CREDENTIALS_DIR_ENV names (a mounted Secret: files, not environment, reach no child
# process, and a rotated Secret is read on the next filesystem use).
S3_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
S3_CREDENTIALS_DIR_ENV = "MLSTACK_S3_CREDENTIALS_DIR"
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "memory", "abfs", "az"}
# Schemes whose URLs name a host (the NameNode) that the filesystem's own paths leave out.
_HOST_SCHEMES = {"hdfs", "webhdfs", "viewfs"}
# The package that provides each scheme's fsspec implementation (named when it is not installed).
_CLIENT_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "hdfs": "hdfs-native",
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
    "hdfs_native",
}
# How hdfs:// clients retry a NameNode they cannot reach. hdfs-native follows HDFS's failover settings,
# whose defaults (15 attempts, sleeps growing from 0.5 s to 15 s) made a stopped NameNode take minutes
# to report, each call hanging meanwhile (measured: a listing still waiting after 2 minutes). 4 attempts with
# jittered sleeps from 0.5 s to 2 s give up after ~6 s (measured), about as long as Hadoop's own Java
# client waits on a refused connection (10 retries, 1 s apart), and a NameNode restart that takes longer
# fails the call rather than hanging it. The same keys in HADOOP_CONF_DIR's *-site.xml still win.
HDFS_CLIENT_DEFAULTS = {
    "dfs.client.failover.max.attempts": "4",
    "dfs.client.failover.sleep.base.millis": "500",
    "dfs.client.failover.sleep.max.millis": "2000",
}
# The hdfs:// filesystems this process made, held for its life. fsspec drops every cached filesystem in a
# forked child (an at-fork handler); dropping hdfs-native's client there waits forever on its runtime's
# threads, which a child does not have: a fork after hdfs:// was used (Spark starting its JVM, any
# subprocess with a preexec_fn) hung before it could exec. Held here, nothing is dropped in the child.
_HDFS_HELD: dict[int, object] = {}
HDFS_DATANODE_HINT = "check that the cluster's DataNodes are up (`hdfs dfsadmin -report` lists the live ones)"
# hdfs-native reports errors as the Rust enum's debug form, e.g. RPCError("java.Class", "message\n\tat ...")
_HDFS_NATIVE_ERROR = re.compile(r"^(\w+)\((.*)\)$", re.DOTALL)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_DATANODE_TROUBLE = (
    "DataTransferError",
    "BlocksNotFound",
    "Failed to complete file",
    "No active nodes contain",
    "Failed to find datanode",
    "could only be written to",
)
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
    if name in {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return StorageError(
            url,
            f"no usable AWS credentials ({text})",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the job an IAM role",
        )
    if name == "NoRegionError":
        return StorageError(url, text, "set AWS_DEFAULT_REGION (or AWS_REGION)")
    if kind in {"hdfs", "webhdfs"}:
        translated = _hdfs_error(url, kind, error)
        if translated is not None:
            return translated
    if isinstance(error, PermissionError) or name == "ClientError":
        return StorageError(url, f"access refused ({text})", _access_hint(kind))
    if module in _CLIENT_MODULES or isinstance(error, OSError):
        return StorageError(url, text, _reach_hint(kind))
    return None


def _raised_in(error: BaseException) -> str:
    """The module whose code raised ``error`` (the innermost frame of its traceback)."""
    module, frame = "", error.__traceback__
    while frame is not None:
        module, frame = frame.tb_frame.f_globals.get("__name__", ""), frame.tb_next
    return module


def _hdfs_error(url: str, kind: str, error: BaseException) -> StorageError | None:
    """The failures of HDFS's clients, which raise builtins: hdfs-native a RuntimeError holding a Rust
    error (``RPCError("...AccessControlException", "Permission denied: ...")``, ``DataTransferError``)
    or an OSError; fsspec's WebHDFS a RuntimeError or PermissionError with the NameNode's message, an
    HTTPError from a DataNode, or a ConnectionError from a DataNode that is gone. None for what is not
    theirs (a FileNotFoundError is never passed here)."""
    raised_in = _raised_in(error)
    message = str(error).strip()
    java_class = ""
    if isinstance(error, RuntimeError) and raised_in.startswith("hdfs_native"):
        parsed = _HDFS_NATIVE_ERROR.match(message)
        if parsed:
            variant, arguments = parsed[1], [_unescape(a) for a in _QUOTED.findall(parsed[2])]
            java_class = arguments[0] if variant == "RPCError" and len(arguments) > 1 else ""
            detail = (arguments[-1] if arguments else parsed[2]).strip()
            detail = detail.splitlines()[0] if detail else variant
            message = f"{detail.split(': [', 1)[0]} ({variant})" if variant != "RPCError" else detail
    elif isinstance(error, RuntimeError | PermissionError) and raised_in == "fsspec.implementations.webhdfs":
        message = message.splitlines()[0] if message else type(error).__name__
    elif type(error).__name__ == "HTTPError" and getattr(error, "response", None) is not None:
        message, java_class = _webhdfs_http_error(error)
    elif kind == "webhdfs" and type(error).__name__ == "ConnectionError":
        # The NameNode redirects each read and write to a DataNode: a refusal from another host:port
        # than the URL's is the DataNode's (the NameNode has not noticed that it is gone yet).
        found = re.search(r"host='([^']+)', port=(\d+)", message)
        address = urlsplit(url)
        if not found or (found[1], int(found[2])) == (address.hostname, address.port):
            return None
        reason = _os_reason(error) or "unreachable"
        return StorageError(
            url, f"cannot connect to the DataNode at {found[1]}:{found[2]} ({reason})", HDFS_DATANODE_HINT
        )
    else:
        return None
    text = message[:200]
    # The NameNode says "/a/file (is not a directory)" for a path under a file, as an AccessControlException
    # (or ParentNotDirectoryException): not a matter of permissions.
    under_a_file = re.search(r'([^\s"]+ \(is not a directory\))', text)
    if under_a_file:
        return StorageError(url, under_a_file[1], _LOCAL_ERRNOS[errno.ENOTDIR])
    if (
        isinstance(error, PermissionError)
        or java_class.endswith(("AccessControlException", "AuthorizationException"))
        or (type(error).__name__ == "HTTPError" and error.response.status_code in {401, 403})
    ):
        return StorageError(url, f"access refused ({text})", _access_hint(kind))
    if any(trouble in f"{type(error).__name__} {error}" for trouble in _DATANODE_TROUBLE):
        return StorageError(url, text, HDFS_DATANODE_HINT)
    return StorageError(url, text, _reach_hint(kind))


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")


def _webhdfs_http_error(error: Any) -> tuple[str, str]:
    """The NameNode's or DataNode's own message in a WebHDFS error answer (its RemoteException JSON)."""
    response = error.response
    try:
        remote = response.json()["RemoteException"]
        return str(remote["message"]).splitlines()[0], str(remote.get("javaClassName", ""))
    except (ValueError, KeyError, TypeError, IndexError):
        return f"HTTP {response.status_code} {response.reason} from {urlsplit(response.url).netloc}", ""


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
        return "check that the NameNode's RPC address in the URL (host:port, 8020 by default) is up and reachable"
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


def _s3_file_credentials(url: str) -> dict[str, str]:
    """s3fs's ``key`` and ``secret`` from the files of :data:`S3_CREDENTIALS_DIR_ENV`, when it is set."""
    directory = os.environ.get(S3_CREDENTIALS_DIR_ENV)
    if not directory:
        return {}
    values = []
    for name in S3_CREDENTIAL_ENV:
        path = pathlib.Path(directory, name)
        try:
            values.append(path.read_text().strip())
        except OSError as error:
            raise StorageError(
                url,
                f"cannot read the S3 credential {path} ({error.strerror or error})",
                f"mount a Secret holding {' and '.join(S3_CREDENTIAL_ENV)} at {directory} "
                f"({S3_CREDENTIALS_DIR_ENV}), or unset {S3_CREDENTIALS_DIR_ENV}",
            ) from None
    return dict(zip(("key", "secret"), values, strict=True))


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


def hadoop_user() -> str:
    """Who HDFS clients act as without Kerberos: ``HADOOP_USER_NAME``, else the local user (as Hadoop's)."""
    return os.environ.get("HADOOP_USER_NAME") or getpass.getuser()


def _hadoop_site_keys() -> set[str]:
    """The property names set in the client's Hadoop configuration (``HADOOP_CONF_DIR``, else
    ``HADOOP_HOME/etc/hadoop``: where hdfs-native reads it)."""
    directory = os.environ.get("HADOOP_CONF_DIR")
    if not directory and os.environ.get("HADOOP_HOME"):
        directory = os.path.join(os.environ["HADOOP_HOME"], "etc", "hadoop")
    keys: set[str] = set()
    for name in ("core-site.xml", "hdfs-site.xml") if directory else ():
        with contextlib.suppress(OSError, ElementTree.ParseError):
            root = ElementTree.parse(os.path.join(directory, name)).getroot()
            keys |= {(item.findtext("name") or "").strip() for item in root.iter("property")}
    return keys


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it; its methods raise :class:`StorageError`."""
    options: dict = {}
    protocol = scheme(url)
    endpoint = os.environ.get(S3_ENDPOINT_ENV)
    if protocol in {"s3", "s3a"}:
        options["config_kwargs"] = _s3_client_config()
        # s3fs otherwise answers listings from a cache kept for the process's life: a long-running reader
        # (the model mirror, serve-dev) would never see a version promoted after its first look.
        options["use_listings_cache"] = False
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        options.update(_s3_file_credentials(url))
    if protocol == "hdfs":
        configured = _hadoop_site_keys()
        options.update({k: v for k, v in HDFS_CLIENT_DEFAULTS.items() if k not in configured})
    if protocol == "webhdfs" and "@" not in urlsplit(url).netloc:
        options["user"] = hadoop_user()
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
    if protocol == "hdfs":
        _HDFS_HELD[id(fs)] = fs  # fsspec returns its cached instance: one entry per cluster and options
    return cast("fsspec.AbstractFileSystem", _Reporting(fs, url)), path


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> pathlib.Path:
    return pathlib.Path(url.removeprefix("file://"))


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return any(p in _OBJECT_STORES for p in protocols)


def url_of(url: str, path: str) -> str:
    """The URL of ``path``, a path as the filesystem of ``url`` names it (``fs.ls``, ``fs.glob``), on the
    same storage as ``url``: HDFS's paths (``/data/train``) leave out the NameNode's host:port, which is
    taken from ``url``; an object store's (``bucket/key``) hold all but the scheme."""
    if "://" not in url:
        return path
    kind = scheme(url)
    if kind in _HOST_SCHEMES and path.startswith("/"):
        return f"{url.split('://', 1)[0]}://{urlsplit(url).netloc}{path}"
    return f"{url.split('://', 1)[0]}://{path}"


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
    if scheme(url) == "webhdfs":
        # fsspec's WebHDFS reads a file's length (GETFILESTATUS), then that many bytes (OPEN with a length):
        # a file published in between came back cut to the old length (measured). One OPEN without a
        # length returns the file the DataNode opened, whole.
        with reporting(url):
            return fs._call("OPEN", path=path).content
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
    _through_temporary(fs, path, url, lambda temporary: fs.pipe_file(temporary, data))


def _through_temporary(
    fs: fsspec.AbstractFileSystem, path: str, url: str, write: Callable[[str], object]
) -> None:
    """``write(temporary)`` beside ``path``, then the temporary renamed over ``path``; removed on failure."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    write(temporary)
    try:
        _rename_over(fs, temporary, path, url)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.rm_file(temporary)
        raise


def _rename_over(fs: fsspec.AbstractFileSystem, source: str, target: str, url: str) -> None:
    """Renames ``source`` to ``target``, replacing it: atomically on HDFS (see the module docstring)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if "hdfs" in protocols:
        fs.mv(source, target, overwrite=True)  # hdfs-native: rename with Options.Rename.OVERWRITE
        return
    if "webhdfs" in protocols:
        with reporting(url):  # fsspec's mv cannot overwrite, and drops WebHDFS's {"boolean": false}
            fs._call("RENAME", method="put", path=source, destination=target, renameoptions="OVERWRITE")
        return
    if fs.exists(target):
        fs.rm_file(target)
    fs.mv(source, target)


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
    _through_temporary(fs, path, url, lambda temporary: fs.put_file(str(local), temporary))


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
