"""Send images to a model server (TF Serving or serve-dev) and print the predictions as JSON lines.

Reads PNG/JPEG files (any size, grey or colour), or makes synthetic images with --synthetic N.
With --signature serving_bytes the files are sent as they are (the model decodes them); with
serving_default they are decoded and resized here and sent as 28x28 pixels 0-255.

Class names are the dataset's, not guessed from the model's name: --class-names gives them, or
--model-base-path (the server's, readable from here) reads them from the SavedModel of the version
that answered (assets.extra/class_names.json; over REST, whose answers do not name the version, the
version is looked up first and asked for by number). Without either, classes are named by number.

Examples:
  python -m workloads predict --images shirt.png boot.jpg --model-base-path demo/serving/models
  python -m workloads predict --server-url grpc://127.0.0.1:8500 --synthetic 4 --label canary
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Sequence

import numpy as np

from workloads.core import logs
from workloads.core.settings import ConfigError, non_negative, option
from workloads.data import datasets
from workloads.serving import class_names as saved_class_names
from workloads.serving import payloads
from workloads.serving.client import ModelServerClient, ServingError
from workloads.serving.client_options import ClientOptions

HELP = "send images to a model server and print the predicted classes"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(ClientOptions):
    images: tuple[str, ...] = option((), help="PNG or JPEG files to classify")
    synthetic: int = option(
        0, help="also send this many synthetic images (no files needed)", check=non_negative
    )
    class_names: tuple[str, ...] = option(
        (),
        help="names of the class ids, comma-separated, in id order; none = from --model-base-path, or the "
        "class numbers",
        check=datasets.class_names_problem,
        metavar="NAME,...",
    )
    model_base_path: str | None = option(
        None,
        help="where the server's versions are (path or URL: serve-dev's --model-base-path, or the "
        "directory above it): name the classes as the answering version's SavedModel does "
        f"({saved_class_names.CLASS_NAMES_FILE})",
    )

    def validate(self) -> None:
        super().validate()
        if not self.images and not self.synthetic:
            raise ConfigError("--images", "give image files with --images, or --synthetic N")
        if self.class_names and self.model_base_path:
            raise ConfigError("--class-names", "give --class-names or --model-base-path, not both")


def run(config: Config) -> int:
    encoded, pixels = payloads.read_image_files(config.images)
    names = list(config.images)
    if config.synthetic:
        extra = payloads.synthetic_images(config.synthetic)
        encoded += [payloads.encode_image(image) for image in extra]
        pixels = np.concatenate([pixels, extra])
        names += [f"synthetic-{i}" for i in range(config.synthetic)]
    with config.make_client() as client:
        version, label = _route(config, client)
        if config.signature == "serving_bytes":
            prediction = client.predict_image_bytes(encoded, version=version, label=label)
        else:
            prediction = client.predict_images(pixels, version=version, label=label)
    classes = _class_names(config, prediction.model_version, prediction.scores.shape[-1])
    for name, class_id, scores in zip(names, prediction.class_ids, prediction.scores, strict=True):
        line = {
            "image": name,
            "class_id": int(class_id),
            "class_name": classes[class_id] if 0 <= class_id < len(classes) else None,
            "score": round(float(scores[class_id]), 6),
            "model_version": prediction.model_version,
        }
        print(json.dumps(line), file=sys.stdout)
    return 0


def _route(config: Config, client: ModelServerClient) -> tuple[int | None, str | None]:
    """The version or label to ask. Reading class names needs the answering version, which REST answers
    do not carry: then the version is looked up (the latest, or the label's) and asked for by number."""
    if not config.model_base_path or config.version is not None or config.server_url.startswith("grpc://"):
        return config.version, config.label
    if config.label is None:
        return client.latest_available_version(), None
    available = [s.version for s in client.model_status(label=config.label) if s.state == "AVAILABLE"]
    if not available:
        raise ServingError(f"status of {config.model_name} label {config.label}", "no version is AVAILABLE")
    return max(available), None


def _class_names(config: Config, version: int | None, num_classes: int) -> Sequence[str]:
    if config.class_names:
        return config.class_names
    if config.model_base_path and version is not None:
        names = saved_class_names.for_version(config.model_base_path, config.model_name, version)
        if names is not None:
            return names
        log.warning(
            "version %d of %s has no %s (exported before SavedModels carried class names): "
            "printing class numbers",
            version,
            config.model_name,
            saved_class_names.CLASS_NAMES_FILE,
            extra=logs.fields(model_base_path=config.model_base_path, version=version),
        )
    return datasets.numbered_class_names(num_classes)
