"""Export a trained model as a TF Serving SavedModel: signatures serving_default (images float32
[N,28,28], raw 0-255) and serving_bytes (PNG/JPEG image_bytes), both returning scores and class_ids,
with the training preprocessing inside, and a warmup file in assets.extra/.

--output writes a plain SavedModel directory; --model-base-path publishes it into TF Serving's
layout as <base>/<model-name>/<next version>/ (never visible half-written).

The model is --model-dir, or, with --registered-model NAME, the version of NAME in MLflow's registry
that the alias `champion` points at (what `select` registered); that version is then tagged with the
TF Serving version it became.
"""

from __future__ import annotations

import dataclasses
import logging

from workloads.core import logs, storage, tracking
from workloads.core.settings import CommandConfig, ConfigError, option
from workloads.serving.tfs_config import MODEL_NAME, model_name_problem
from workloads.workflow.export import export_trained_model, promote_trained_model

HELP = "export a trained model as a SavedModel for TF Serving (optionally as a new version)"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    model_dir: str | None = option(
        None, help="trained-model directory (model.keras + training.json); or give --registered-model"
    )
    registered_model: str | None = option(
        None,
        help=f"export the version of this MLflow registered model that the alias {tracking.CHAMPION!r} "
        "points at, instead of --model-dir",
    )
    tracking_uri: str | None = tracking.uri_option("none: --registered-model needs one")
    output: str | None = option(None, help="SavedModel directory to write (replaced whole if it exists)")
    model_base_path: str | None = option(None, help="TF Serving base path: publish as the next version there")
    model_name: str = option(
        MODEL_NAME, help="model name under the base path and in the warmup requests", check=model_name_problem
    )
    warmup_data: str | None = option(
        None, help="shard directory to take warmup images from; none = blank images"
    )
    s3_endpoint: str | None = option(None, help="S3 endpoint URL for s3:// (sets AWS_ENDPOINT_URL)")

    def validate(self) -> None:
        if (self.output is None) == (self.model_base_path is None):
            raise ConfigError("--output", "give exactly one of --output and --model-base-path")
        if (self.model_dir is None) == (self.registered_model is None):
            raise ConfigError("--model-dir", "give exactly one of --model-dir and --registered-model")


def run(config: Config) -> int:
    storage.set_s3_endpoint(config.s3_endpoint)
    registered, model_dir = _model(config)
    if config.output:
        export_trained_model(model_dir, config.output, config.warmup_data, config.model_name)
        log.info("SavedModel written", extra=logs.fields(output=config.output))
        print(config.output)
        return 0
    version, url = promote_trained_model(
        model_dir, config.model_base_path, config.model_name, config.warmup_data
    )
    if registered is not None:
        tracked, number = registered
        tracking.tag_served(tracked, config.registered_model, number, version, url)
    print(url)
    return 0


def _model(config: Config) -> tuple[tuple[tracking.Tracking, int] | None, str]:
    """The trained-model directory to export, and the registry version it is (with its store), if any."""
    if config.registered_model is None:
        return None, config.model_dir
    tracked = tracking.resolve(config.tracking_uri, False, None)
    if tracked is None:
        raise ConfigError("--tracking-uri", "--registered-model reads MLflow's registry: give its URI")
    number, model_dir = tracking.champion_model(tracked, config.registered_model, "--registered-model")
    log.info(
        "exporting the champion",
        extra=logs.fields(model=config.registered_model, version=number, model_dir=model_dir),
    )
    return (tracked, number), model_dir
