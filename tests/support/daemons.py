"""Daemons the tests start as local processes (Kafka nodes, HDFS NameNodes and DataNodes): started so that
they die with the test process, stopped the way their units stop them, or killed as by a power cut."""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Mapping, Sequence


def launch(
    argv: Sequence[str | os.PathLike], env: Mapping[str, str], log: pathlib.Path, user: str | None = None
) -> subprocess.Popen:
    """``argv`` in the background (as ``user``, when given), its output appended to ``log``. SIGTERM reaches
    it if the test process dies first (setpriv, the launcher scripts and the JVM are one process: each execs
    the next; the death signal is set after the change of user, which would clear it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        return subprocess.Popen(
            [*as_user(user), "setpriv", "--pdeathsig", "TERM", "--", *argv],
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def as_user(user: str | None) -> list[str]:
    """The prefix that runs a command as ``user`` (its own group, no other); none for None."""
    return ["setpriv", "--reuid", user, "--regid", user, "--clear-groups", "--"] if user else []


def stop(process: subprocess.Popen | None, timeout_s: float) -> int | None:
    """SIGTERM (the JVM's shutdown hooks run), SIGKILL after ``timeout_s``; the exit status."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def kill(process: subprocess.Popen | None) -> None:
    """SIGKILL: the daemon dies without a word, as on a power cut."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
