"""Keep a local directory holding the same versions of a model as the model store, for a stock TF Serving
to serve: the sidecar of the serving pods when the store is s3:// or hdfs:// (neither of which stock TF
Serving reads).

Each version appears whole (copied under a hidden name, then renamed), only once the store holds its
saved_model.pb (written last by promotion); versions removed from the store (a rollback) are removed
too. An unreachable store is a warning and the next poll tries again. Stops on SIGTERM.

Example:
  python -m workloads mirror-models --model-store hdfs://namenode:8020/mlstack/models --target /models
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

from workloads.core import fsutil, signals, storage
from workloads.core.settings import CommandConfig, option, positive
from workloads.serving.tfs_config import MODEL_NAME, model_name_problem
from workloads.workflow import mirror

HELP = "mirror a model's versions from the model store into a local directory for TF Serving"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    model_store: str = option(help="model store URL holding <model-name>/<version>/ (path, s3://, hdfs://)")
    target: str = option(
        help="local directory to keep <model-name>/<version>/ in (the volume TF Serving reads)"
    )
    model_name: str = option(MODEL_NAME, help="model to mirror", check=model_name_problem)
    interval: float = option(10.0, help="seconds between looks at the store", check=positive)
    once: bool = option(False, help="mirror once and exit (non-zero if the store cannot be read)")
    ready_file: str | None = option(
        None, help="write this file (JSON) after the first successful look, for a readiness probe"
    )
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// (sets AWS_ENDPOINT_URL)")


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    source = storage.join(config.model_store, config.model_name)
    target = pathlib.Path(config.target) / config.model_name
    if config.once:
        mirror.mirror_once(source, target)
        _mark_ready(config)
        return 0
    stop = signals.stop_on_signals("the current copy")
    log.info("mirroring %s into %s every %g s", source, target, config.interval)
    mirror.mirror_forever(source, target, config.interval, stop, on_poll=lambda _: _mark_ready(config))
    return 0


def _mark_ready(config: Config) -> None:
    if config.ready_file and not pathlib.Path(config.ready_file).exists():
        fsutil.atomic_write_text(config.ready_file, '{"ready": true}\n')
