"""Failures the user can act on. The CLI prints these as one clear line and exits non-zero."""


class WorkloadError(Exception):
    """An expected failure with a message that says what went wrong and what to do next."""

    exit_code = 1


class DataError(WorkloadError):
    """Input data is missing, corrupt or malformed; names the file and, where known, the byte offset."""

    def __init__(self, path: str, problem: str, offset: int | None = None) -> None:
        where = f"{path} at byte {offset}" if offset is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.offset = offset


class StorageError(WorkloadError, OSError):
    """Storage at ``url`` cannot be reached, refuses access, or has no client or runtime for its scheme.

    ``cause`` is what went wrong, in one line; ``hint`` names the setting or package to check. It is
    also an :class:`OSError`, so code that treats I/O failures as non-fatal (pruning old checkpoints)
    keeps doing so; a missing file is *not* a storage error and stays a :class:`FileNotFoundError`.
    """

    def __init__(self, url: str, cause: str, hint: str) -> None:
        super().__init__(f"{url}: {cause}; {hint}")
        self.url = url
        self.cause = cause
        self.hint = hint

    def __reduce__(self) -> tuple:
        return type(self), (self.url, self.cause, self.hint)


class ClusterConfigError(WorkloadError):
    """The cluster environment (TF_CONFIG, torchrun variables) is inconsistent."""


class CheckpointError(WorkloadError):
    """A checkpoint cannot be written or restored."""


class PeerLostError(WorkloadError):
    """A peer of a distributed job died or stopped answering; restarting the group can fix it.

    Kubeflow's ExitCode restart policy treats exit codes 128-255 as retryable and 1-127 as permanent;
    138 is in the retryable range and unlike the codes shells give signals (130 SIGINT, 137 SIGKILL,
    143 SIGTERM), so a log reader can tell "peer lost" from "killed".
    """

    exit_code = 138


def is_retryable_exit(code: int) -> bool:
    """Exit codes a job controller should answer with a restart: killed by a signal, or 128-255."""
    return code < 0 or code >= 128
