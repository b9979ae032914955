"""A throwaway PostgreSQL server for the tests, from Debian's packages (`make system-deps`): its own data
directory, a generated password (SCRAM), loopback TCP on a free port. As root it runs as the `postgres`
user, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from tests.support import daemons

USER = "postgres"  # the account Debian's package creates; the server runs as it when the tests are root
DATABASE = "mlstack"
START_TIMEOUT_S = 60


def binaries() -> pathlib.Path:
    """The newest PostgreSQL's bin/ under /usr/lib/postgresql."""
    found = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make system-deps` (Debian package postgresql)")
    return found[-1].parent


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Runs the server while inside; yields ``postgresql://user:password@127.0.0.1:port/mlstack``."""
    bin_dir, user = binaries(), USER if os.geteuid() == 0 else None
    # Not under pytest's 0700 temporary directories: the server's user must reach its data directory.
    root = pathlib.Path(tempfile.mkdtemp(prefix="mlstack-postgres-"))
    password, port = secrets.token_hex(16), _free_port()
    try:
        (root / "password").write_text(password)
        if user is not None:
            shutil.chown(root, user, user)
            shutil.chown(root / "password", user, user)
        _as(user, bin_dir / "initdb", "-D", root / "data", "-U", "mlstack", "--auth=scram-sha-256",
            "--pwfile", root / "password", "-E", "UTF8", "--no-sync")  # fmt: skip
        server = daemons.launch(
            [bin_dir / "postgres", "-D", root / "data", "-h", "127.0.0.1", "-p", str(port), "-k", root],
            {"PATH": os.environ["PATH"]},
            root / "server.log",
            user=user,
        )
        try:
            url = f"postgresql://mlstack:{password}@127.0.0.1:{port}"
            _wait_ready(bin_dir, url, server, root / "server.log")
            _as(None, bin_dir / "createdb", "--maintenance-db", f"{url}/postgres", DATABASE)
            yield f"{url}/{DATABASE}"
        finally:
            daemons.stop(server, timeout_s=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _as(user: str | None, *argv: str | os.PathLike) -> None:
    subprocess.run([*daemons.as_user(user), *argv], check=True, capture_output=True)


def _wait_ready(bin_dir: pathlib.Path, url: str, server: subprocess.Popen, log: pathlib.Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while subprocess.run([bin_dir / "pg_isready", "-d", f"{url}/postgres"], capture_output=True).returncode:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
