"""The workflow's last step: TF Serving serves the version ``select`` promoted, and it answers as the
selection measured.

:func:`verify` waits (bounded) until the server reports the promoted version ``AVAILABLE``, then sends
it the first held-out records by version number and compares the accuracy of its answers with the
promoted accuracy. Over the whole held-out split the two must agree within a tolerance (the same model
on the same records: only a different model, or different preprocessing, tells them apart). Over a
sample they must agree within :data:`STANDARD_ERRORS` binomial standard errors of the promoted accuracy
plus the tolerance, so a smoke check of a few hundred records fails for a wrong model, not for chance.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np

from workloads.core import logs
from workloads.core.errors import DataError, WorkloadError
from workloads.data.sampling import sequential_batches
from workloads.data.shards import ShardSet
from workloads.serving import payloads
from workloads.serving.client import BYTES_SIGNATURE, DEFAULT_SIGNATURE, ModelServerClient, ServingError
from workloads.workflow.selection import Promotion

log = logging.getLogger(__name__)

BATCH = 100  # records per predict request
STANDARD_ERRORS = 4  # a sample's accuracy may differ from the promoted one by this many, plus the tolerance
POLL_S = 2.0  # between status requests while waiting for the version
LOG_EVERY_S = 30.0  # a progress line at least this often while the answer stays the same


class ServingVerificationError(WorkloadError):
    """TF Serving does not serve the promoted version in time, or its answers disagree with the selection."""


@dataclasses.dataclass(frozen=True)
class AccuracyCheck:
    """The served accuracy on ``records`` of the ``held_out`` records against the promoted accuracy."""

    records: int
    held_out: int
    served: float
    promoted: float
    tolerance: float

    @property
    def whole_split(self) -> bool:
        return self.records >= self.held_out

    @property
    def allowed(self) -> float:
        """How far the served accuracy may be from the promoted one."""
        if self.whole_split:
            return self.tolerance
        standard_error = math.sqrt(self.promoted * (1 - self.promoted) / self.records)
        return STANDARD_ERRORS * standard_error + self.tolerance

    @property
    def passed(self) -> bool:
        return abs(self.served - self.promoted) <= self.allowed + 1e-9

    def describe(self) -> str:
        how = (
            f"the whole held-out split, within the tolerance {self.tolerance:g}"
            if self.whole_split
            else f"a sample of the {self.held_out} held-out records, within {STANDARD_ERRORS} standard "
            f"errors plus the tolerance {self.tolerance:g}"
        )
        verdict = "agrees with" if self.passed else "disagrees with"
        return (
            f"accuracy {self.served:.4f} on {self.records} held-out records {verdict} the promoted "
            f"{self.promoted:.4f} (off by {abs(self.served - self.promoted):.4f}, allowed {self.allowed:.4f}: "
            f"{how})"
        )


def verify(
    client: ModelServerClient,
    promotion: Promotion,
    data: ShardSet,
    *,
    records: int,
    wait_s: float,
    tolerance: float,
    signature: str = DEFAULT_SIGNATURE,
) -> str:
    """Waits for the promoted version, checks its answers on ``data``; returns a one-line summary."""
    if len(data) == 0:
        raise DataError(data.url, "the held-out split holds no records to send")
    if data.url != promotion.data:
        log.warning(
            "checking on %s, but the promoted accuracy was measured on %s: they may disagree",
            data.url,
            promotion.data,
        )
    wait_for_version(client, promotion.version, wait_s)
    sent, served = served_accuracy(client, promotion.version, data, records, signature)
    check = AccuracyCheck(sent, len(data), served, promotion.accuracy, tolerance)
    where = f"{promotion.model_name} version {promotion.version} at {client.target}"
    if not check.passed:
        raise ServingVerificationError(
            f"{where}: {check.describe()}; the server answers unlike the model the selection measured"
        )
    return f"{where} is AVAILABLE; {check.describe()}"


def wait_for_version(client: ModelServerClient, version: int, wait_s: float, poll_s: float = POLL_S) -> None:
    """Polls the version's status until it is ``AVAILABLE``, logging progress; fails after ``wait_s``."""
    start = time.monotonic()
    last, logged_at = "", -math.inf
    while True:
        state, answer = version_state(client, version)
        if state == "AVAILABLE":
            return
        elapsed = time.monotonic() - start
        if answer != last or elapsed - logged_at >= LOG_EVERY_S:
            log.info(
                "waiting for %s version %d to be AVAILABLE: %s (%.0f s of %g s)",
                client.model_name,
                version,
                answer,
                elapsed,
                wait_s,
                extra=logs.fields(version=version, state=state),
            )
            last, logged_at = answer, elapsed
        if elapsed >= wait_s:
            raise ServingVerificationError(
                f"{client.model_name} version {version} at {client.target} was not AVAILABLE within "
                f"{wait_s:g} s; the last answer: {answer}"
            )
        time.sleep(min(poll_s, wait_s - elapsed))


def version_state(client: ModelServerClient, version: int) -> tuple[str | None, str]:
    """The version's state (None when the server does not report one) and the answer in words."""
    try:
        statuses = [s for s in client.model_status(version=version) if s.version == version]
    except ServingError as error:  # not loaded yet (NOT_FOUND), or the server is not up yet
        return None, str(error)
    if not statuses:
        return None, "the status lists no such version"
    status = statuses[0]
    if status.error_code not in ("", "OK"):
        return status.state, f"{status.state} ({status.error_code}: {status.error_message})"
    return status.state, status.state


def served_accuracy(
    client: ModelServerClient, version: int, data: ShardSet, records: int, signature: str = DEFAULT_SIGNATURE
) -> tuple[int, float]:
    """Sends the first ``records`` records of ``data`` (all, if it holds fewer) to ``version`` in batches;
    returns how many were sent and the share answered with their label."""
    sent = correct = 0
    for images, labels in sequential_batches(data, BATCH):
        images, labels = images[: records - sent], labels[: records - sent]
        correct += int(np.sum(_predict(client, images, version, signature) == labels))
        sent += len(labels)
        if sent >= records:
            break
    return sent, correct / sent


def _predict(client: ModelServerClient, images: np.ndarray, version: int, signature: str) -> np.ndarray:
    if signature == BYTES_SIGNATURE:
        encoded = [payloads.encode_image(image) for image in images]
        return client.predict_image_bytes(encoded, version=version).class_ids
    return client.predict_images(images, version=version).class_ids
