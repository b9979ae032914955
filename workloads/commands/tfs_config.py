"""Write TF Serving's config files (model config, batching parameters, monitoring) into a directory.

The cluster deployment mounts the same files; generate them here to inspect them or to run
TF Serving by hand:

  tensorflow_model_server --model_config_file=DIR/models.config \\
      --enable_batching --batching_parameters_file=DIR/batching.config \\
      --monitoring_config_file=DIR/monitoring.config
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from typing import Literal

from workloads.core import logs
from workloads.core.fsutil import atomic_write_text
from workloads.core.settings import CommandConfig, option, positive
from workloads.serving import tfs_config

HELP = "write TF Serving's model, batching and monitoring config files"
log = logging.getLogger(__name__)


def _labels_check(labels: tuple[str, ...]) -> str | None:
    for item in labels:
        name, sep, version = item.partition("=")
        if not sep or not name or not version.isdigit():
            return f"each label is NAME=VERSION (e.g. stable=3), got {item!r}"
    return None


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    out_dir: str = option(help="directory to write models.config, batching.config and monitoring.config into")
    model_base_path: str = option(
        help="directory (or s3:// / hdfs:// URL) holding <version>/ SavedModel folders"
    )
    model_name: str = option(
        tfs_config.MODEL_NAME,
        help="name clients use in /v1/models/<name>",
        check=tfs_config.model_name_problem,
    )
    versions: tuple[int, ...] = option(
        (), help="serve exactly these versions (comma-separated); empty = latest"
    )
    labels: tuple[str, ...] = option(
        (), help="version labels NAME=VERSION, e.g. stable=3 canary=4", check=_labels_check
    )
    device: Literal["cpu", "gpu"] = option("cpu", help="batching profile: cpu or gpu")
    cpu_cores: int = option(
        os.cpu_count() or 1, help="CPU cores the server gets (sets num_batch_threads)", check=positive
    )
    metrics_path: str = option(tfs_config.METRICS_PATH, help="HTTP path of the Prometheus metrics")


def run(config: Config) -> int:
    try:
        model = tfs_config.ServedModel(
            name=config.model_name,
            base_path=config.model_base_path,
            versions=config.versions,
            labels=tuple((name, int(v)) for name, _, v in (item.partition("=") for item in config.labels)),
        )
        files = {
            "models.config": tfs_config.render_model_config([model]),
            "batching.config": tfs_config.render_batching_parameters(
                tfs_config.batching_profile(config.device, config.cpu_cores)
            ),
            "monitoring.config": tfs_config.render_monitoring_config(config.metrics_path),
        }
    except tfs_config.TfsConfigError as error:
        log.error("%s", error)
        return 2
    out = pathlib.Path(config.out_dir)
    for name, text in files.items():
        atomic_write_text(out / name, text)
        log.info("wrote %s", out / name, extra=logs.fields(path=str(out / name)))
    return 0
