"""Record how a workflow run ended: the Argo workflow's exit handler.

Writes {"workflow", "status", "failures", "recorded_at"} as JSON to --output (a path, hdfs:// or s3://
URL, replaced atomically) and logs one line per failed step saying which step failed and why.
--failures is Argo's {{workflow.failures}}: a JSON list of {displayName, message, templateName, phase,
podName, finishedAt}, empty or "null" when nothing failed; text that is not such a list is recorded as
it is (a string in "failures"), with a warning. Exits 0 whatever the workflow's status, so recording
never fails the exit handler; only when the outcome cannot be written does it fail, naming --output.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from typing import Any

from workloads.core import logs, storage
from workloads.core.settings import CommandConfig, non_empty, option

HELP = "record a workflow run's status and failed steps (the Argo exit handler)"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    workflow: str = option(help="the workflow run's name ({{workflow.name}})", check=non_empty)
    status: str = option(
        help="how it ended ({{workflow.status}}: Succeeded, Failed or Error)", check=non_empty
    )
    output: str = option(help="where to write the outcome JSON (path or URL: hdfs://, s3:// ...)")
    failures: str | None = option(
        None,
        help="the failed steps ({{workflow.failures}}): a JSON list of objects with displayName, message, "
        "templateName, phase, podName, finishedAt; empty or null = none",
        metavar="JSON",
    )
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// (sets AWS_ENDPOINT_URL)")


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    failures = parse_failures(config.failures)
    for failure in failures if isinstance(failures, list) else ():
        _log_failure(failure)
    outcome = {
        "workflow": config.workflow,
        "status": config.status,
        "failures": failures,
        "recorded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    storage.publish_bytes(config.output, json.dumps(outcome, indent=1).encode())
    log.info(
        "workflow %s %s; outcome recorded at %s",
        config.workflow,
        config.status,
        config.output,
        extra=logs.fields(workflow=config.workflow, status=config.status, path=config.output),
    )
    return 0


def parse_failures(text: str | None) -> list[Any] | str:
    """Argo's failures as a list ([] for none, empty or null), or ``text`` itself when it is not a JSON list."""
    if text is None or text.strip() in ("", "null"):
        return []
    try:
        failures = json.loads(text)
    except json.JSONDecodeError:
        failures = None
    if isinstance(failures, list):
        return failures
    log.warning("--failures is not a JSON list; recording it as text: %.200s", text)
    return text


def _log_failure(failure: Any) -> None:
    if not isinstance(failure, dict):
        log.warning("failed: %s", failure)
        return
    log.warning(
        "step %s (template %s) %s: %s",
        failure.get("displayName", "?"),
        failure.get("templateName", "?"),
        failure.get("phase", "failed"),
        failure.get("message") or "no message",
        extra=logs.fields(failure=failure),
    )
