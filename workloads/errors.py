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


class ClusterConfigError(WorkloadError):
    """The cluster environment (TF_CONFIG, torchrun variables) is inconsistent."""


class CheckpointError(WorkloadError):
    """A checkpoint cannot be written or restored."""
