"""Bounds on the waits of a training process that its main thread cannot break out of.

TensorFlow blocks the main thread in C++ while it waits for its peers (a strategy joining its
cluster) and while a ps or worker task serves (``server.join()``). Python runs signal handlers only
between bytecodes of the main thread; MultiWorkerMirroredStrategy's start-up even keeps the GIL, so
no Python thread runs at all; and its coordination service installs a SIGTERM handler of its own (a
preemption notice that nothing here reads), so a TensorFlow worker ignored SIGTERM. Hence:

- :func:`exit_on_signals`: SIGTERM and SIGINT end the process at once with exit code 128 + the
  signal number (143, 130), its logs flushed, whatever the main thread is doing. Python's C-level
  handler writes each signal to a wakeup pipe that a daemon thread reads; the same thread puts
  Python's handler back when a library replaces it (Linux). While the GIL is held, the signal waits
  for it (at the latest, for the start-up deadline).
- :func:`startup_deadline`: a start-up that has not completed shortly after its deadline
  (TensorFlow's own error, where it has one, comes first) ends the process with the retryable exit
  code 138 (:class:`PeerLostError`), from a daemon thread that names the peers that do not answer.
  Where the wait keeps the GIL, a kernel timer backs the thread up: SIGALRM, whose default action
  ends the process (a signal death, which job controllers and the local launcher also retry).

Nothing here imports a framework, so both are tested without one.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import select
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import NoReturn

from workloads.core import logs
from workloads.core.errors import PeerLostError

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
CHECK_SECONDS = 0.2  # how often the signal thread checks that the handlers are still Python's
PROBE_SECONDS = 1.0  # connect timeout when naming the peers that do not answer
GRACE_SECONDS = 5.0  # after a start-up deadline: for TensorFlow's own error, then for the thread
_watching = threading.Event()


def exit_on_signals() -> bool:
    """From now on SIGTERM and SIGINT end this process within moments (exit 143 and 130), logs flushed.

    Call it from the main thread before the framework starts. False where it cannot be done (not the
    main thread): the signals then keep their usual effect.
    """
    if _watching.is_set():
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handled_by_the_signal_thread)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    handlers = _Handlers(STOP_SIGNALS)
    threading.Thread(target=_watch_signals, args=(read_end, handlers), name="signals", daemon=True).start()
    _watching.set()
    return True


def _handled_by_the_signal_thread(signum: int, frame: object) -> None:
    """Python's handler: nothing, the signal thread has the signal from the wakeup pipe."""


def _watch_signals(read_end: int, handlers: _Handlers) -> None:
    while True:
        ready, _, _ = select.select([read_end], [], [], CHECK_SECONDS)
        if not ready:
            handlers.take_back()
            continue
        for signum in os.read(read_end, 64):
            if signum in STOP_SIGNALS:
                name = signal.Signals(signum).name
                exit_process(128 + signum, f"received {name}; exiting", logging.WARNING, signal=name)


class _Handlers:
    """Python's C-level handlers of ``signums``, reinstalled when a library replaces them.

    Works on ``struct sigaction`` as opaque bytes whose first field is the handler, which is so on
    Linux for x86-64 and arm64 (glibc and musl); elsewhere nothing is checked.
    """

    SIZE = 256  # more than sizeof(struct sigaction): 152 bytes with glibc on x86-64 and arm64

    def __init__(self, signums: tuple[int, ...]) -> None:
        self.saved: dict[int, ctypes.Array] = {}
        supported = sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")
        self.sigaction = ctypes.CDLL(None, use_errno=True).sigaction if supported else None
        for signum in signums if self.sigaction else ():
            saved = ctypes.create_string_buffer(self.SIZE)
            if self.sigaction(signum, None, saved) == 0:
                self.saved[signum] = saved

    def take_back(self) -> None:
        current = ctypes.create_string_buffer(self.SIZE)
        for signum, saved in self.saved.items():
            if self.sigaction(signum, None, current) != 0 or _handler(current) == _handler(saved):
                continue
            if self.sigaction(signum, saved, None) == 0:
                log.debug("took back the %s handler from a library", signal.Signals(signum).name)


def _handler(action: ctypes.Array) -> int | None:
    return ctypes.c_void_p.from_buffer(action).value


@contextlib.contextmanager
def startup_deadline(seconds: float, peers: Mapping[str, str]) -> Iterator[None]:
    """Ends this process with exit code 138 (retryable) unless the block completes within ``seconds``
    (plus :data:`GRACE_SECONDS`); a kernel timer ends it with SIGALRM after one more grace period.

    ``peers`` maps each peer's name ("worker 1") to its ``host:port``; those that do not accept a
    connection when time is up are named as the ones missing.
    """
    done = threading.Event()

    def expire() -> None:
        if done.wait(seconds + GRACE_SECONDS):
            return
        message = not_joined(seconds, peers)
        if not done.is_set():
            exit_process(PeerLostError.exit_code, message, logging.ERROR)

    threading.Thread(target=expire, name="startup-deadline", daemon=True).start()
    backstop = threading.current_thread() is threading.main_thread()
    if backstop:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, seconds + 2 * GRACE_SECONDS)
    try:
        yield
    finally:
        done.set()
        if backstop:
            signal.setitimer(signal.ITIMER_REAL, 0)


def not_joined(seconds: float, peers: Mapping[str, str], missing: Sequence[str] = ()) -> str:
    """The one line that says a start-up is past its deadline, naming ``missing`` (peer names) or else
    the peers that do not accept a connection now."""
    if missing:
        why = ", ".join(f"{name} ({peers[name]})" if name in peers else name for name in missing)
        why = f"{why} never registered"
    elif silent := [f"{name} ({address})" for name, address in peers.items() if not _answers(address)]:
        why = f"no answer from {', '.join(silent)}"
    else:
        why = "every peer answers, but not all of them joined"
    return f"not every task joined within {seconds:g} s (--startup-timeout): {why}"


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS):
            return True
    except (OSError, ValueError):
        return False


def exit_process(code: int, message: str, level: int, **fields: object) -> NoReturn:
    """Logs ``message``, flushes the logs and ends the process with ``code`` from any thread, at once."""
    log.log(level, message, extra=logs.fields(exit_code=code, **fields))
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
