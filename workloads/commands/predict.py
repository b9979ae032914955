"""Send images to a model server (TF Serving or serve-dev) and print the predictions as JSON lines.

Reads PNG/JPEG files (any size, grey or colour), or makes synthetic images with --synthetic N.
With --signature serving_bytes the files are sent as they are (the model decodes them); with
serving_default they are decoded and resized here and sent as 28x28 pixels 0-255.

Examples:
  python -m workloads predict --images shirt.png boot.jpg
  python -m workloads predict --server-url grpc://127.0.0.1:8500 --synthetic 4 --label canary
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

import numpy as np

from workloads.core.settings import ConfigError, non_negative, option
from workloads.data import synthetic
from workloads.serving import payloads
from workloads.serving.client_options import ClientOptions

HELP = "send images to a model server and print the predicted classes"
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config(ClientOptions):
    images: tuple[str, ...] = option((), help="PNG or JPEG files to classify")
    synthetic: int = option(
        0, help="also send this many synthetic images (no files needed)", check=non_negative
    )

    def validate(self) -> None:
        super().validate()
        if not self.images and not self.synthetic:
            raise ConfigError("--images", "give image files with --images, or --synthetic N")


def run(config: Config) -> int:
    encoded, pixels = payloads.read_image_files(config.images)
    names = list(config.images)
    if config.synthetic:
        extra = payloads.synthetic_images(config.synthetic)
        encoded += [payloads.encode_image(image) for image in extra]
        pixels = np.concatenate([pixels, extra])
        names += [f"synthetic-{i}" for i in range(config.synthetic)]
    with config.make_client() as client:
        if config.signature == "serving_bytes":
            prediction = client.predict_image_bytes(encoded, version=config.version, label=config.label)
        else:
            prediction = client.predict_images(pixels, version=config.version, label=config.label)
    for name, class_id, scores in zip(names, prediction.class_ids, prediction.scores, strict=True):
        line = {
            "image": name,
            "class_id": int(class_id),
            "class_name": synthetic.CLASS_NAMES[class_id]
            if 0 <= class_id < len(synthetic.CLASS_NAMES)
            else None,
            "score": round(float(scores[class_id]), 6),
            "model_version": prediction.model_version,
        }
        print(json.dumps(line), file=sys.stdout)
    return 0
