"""SavedModel export for TF Serving: two signatures with the training preprocessing, and a warmup file.

Signatures (the contract in ``docs/interfaces.md``):

- ``serving_default``: ``images`` float32 ``[N, 28, 28]``, raw 0-255 intensities as stored in the IDX
  files; outputs ``scores`` float32 ``[N, 10]`` and ``class_ids`` int64 ``[N]``.
- ``serving_bytes``: ``image_bytes`` string ``[N]``, PNG or JPEG of any size, grey or colour; each is
  decoded to one grey channel, resized to 28x28 (only when it is not 28x28 already) and fed to the same
  function as ``serving_default``. The ``_bytes`` suffix lets TF Serving's REST API take
  ``{"b64": ...}``.

The model's own first layer scales 0-255 to [0, 1], so both signatures do exactly what training did.
``assets.extra/tf_serving_warmup_requests`` holds ``PredictionLog`` records (one request per
signature) that TF Serving replays at load time, so the first real request does not pay for graph
warmup. ``assets.extra/class_names.json`` names the class ids (``workloads.serving.class_names``): the
names in the manifest of the dataset the model was trained on (``training.json``'s ``data``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from workloads import models
from workloads.core import logs, storage
from workloads.core.errors import WorkloadError
from workloads.serving import class_names as saved_class_names
from workloads.serving.client import (
    BYTES_SIGNATURE,
    DEFAULT_SIGNATURE,
    IMAGE_BYTES_INPUT,
    IMAGES_INPUT,
)
from workloads.serving.tfs_config import MODEL_NAME
from workloads.workflow import promote

WARMUP_FILE = pathlib.Path("assets.extra") / "tf_serving_warmup_requests"
# Which trained model a promoted version was exported from (see provenance()).
PROVENANCE_FILE = pathlib.Path("assets.extra") / "provenance.json"
log = logging.getLogger(__name__)


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 ``[rows, cols]`` image as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _serving_functions(model: Any) -> tuple[Any, Any]:
    import tensorflow as tf

    rows, cols = models.IMAGE_SHAPE

    def predict(images):
        scores = model(images, training=False)
        return {"scores": scores, "class_ids": tf.argmax(scores, axis=-1, output_type=tf.int64)}

    def decode(encoded):
        image = tf.io.decode_image(encoded, channels=1, expand_animations=False)
        image = tf.cast(image, tf.float32)
        shape = tf.shape(image)
        image = tf.cond(
            tf.logical_and(tf.equal(shape[0], rows), tf.equal(shape[1], cols)),
            lambda: image,
            lambda: tf.image.resize(image, [rows, cols], antialias=True),
        )
        return tf.reshape(image, [rows, cols])

    def predict_bytes(image_bytes):
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([rows, cols], tf.float32))
        return predict(images)

    return predict, predict_bytes


def export_saved_model(
    model: Any,
    directory: pathlib.Path,
    *,
    model_name: str = MODEL_NAME,
    warmup_images: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> None:
    """Writes the SavedModel (both signatures), its warmup file and its class names (None: the class
    numbers) into ``directory``."""
    import keras
    import tensorflow as tf

    rows, cols = models.IMAGE_SHAPE
    predict, predict_bytes = _serving_functions(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        DEFAULT_SIGNATURE,
        predict,
        input_signature=[tf.TensorSpec([None, rows, cols], tf.float32, name=IMAGES_INPUT)],
    )
    archive.add_endpoint(
        BYTES_SIGNATURE,
        predict_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)],
    )
    archive.write_out(str(directory), verbose=False)
    if warmup_images is None:
        warmup_images = np.zeros((2, rows, cols), np.uint8)
    write_warmup_file(directory / WARMUP_FILE, warmup_images, model_name)
    if class_names is None:
        class_names = [str(i) for i in range(models.NUM_CLASSES)]
    saved_class_names.write(directory, class_names)


def write_warmup_file(path: pathlib.Path, images: np.ndarray, model_name: str) -> None:
    """TF Serving warmup: one ``PredictionLog`` per signature, as TFRecords."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    images = np.asarray(images, np.uint8)
    requests = []
    tensor_request = predict_pb2.PredictRequest()
    tensor_request.model_spec.name = model_name
    tensor_request.model_spec.signature_name = DEFAULT_SIGNATURE
    tensor_request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(images.astype(np.float32)))
    requests.append(tensor_request)
    bytes_request = predict_pb2.PredictRequest()
    bytes_request.model_spec.name = model_name
    bytes_request.model_spec.signature_name = BYTES_SIGNATURE
    bytes_request.inputs[IMAGE_BYTES_INPUT].CopyFrom(
        tf.make_tensor_proto([encode_png(image) for image in images], dtype=tf.string)
    )
    requests.append(bytes_request)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(record.SerializeToString())


def read_warmup_file(path: pathlib.Path) -> list[Any]:
    """The ``PredictionLog`` records of a warmup file (for checks and tests)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for raw in tf.data.TFRecordDataset(str(path)):
        record = prediction_log_pb2.PredictionLog()
        record.ParseFromString(raw.numpy())
        logs.append(record)
    return logs


def _warmup_images(data_url: str | None, count: int = 4) -> np.ndarray | None:
    """A few real held-out images for the warmup requests (zeros when there is no data)."""
    if data_url is None:
        return None
    from workloads.data.shards import ShardSet

    data = ShardSet.open(data_url)
    return np.asarray(data.shard(0).images[:count]) if data.num_shards else None


def trained_class_names(trained_url: str, fallback_data: str | None = None) -> tuple[str, ...]:
    """The class names of the dataset a trained model learnt from (``training.json``'s ``data``); when
    that cannot be read, those of ``fallback_data`` (the held-out split of the same dataset, which
    selection evaluated on); else the class numbers, with a warning."""
    from workloads.data import datasets
    from workloads.training import trained_model

    for url in (trained_model.read_record(trained_url).data, fallback_data):
        if not url:
            continue
        try:
            return datasets.dataset_class_names(url)
        except (WorkloadError, OSError) as error:
            log.warning("cannot read class names from %s: %s", url, error, extra=logs.fields(data=url))
    log.warning("no dataset to take class names from: the SavedModel names classes by their numbers")
    return datasets.numbered_class_names()


def require_trained_model(trained_url: str) -> None:
    """Fails in one line, before TensorFlow is loaded, when ``trained_url`` holds no trained model."""
    from workloads.training import trained_model

    if not storage.exists(storage.join(trained_url, trained_model.MODEL_FILE)):
        raise WorkloadError(
            f"{trained_url} holds no trained model ({trained_model.MODEL_FILE} is missing): give --model-dir "
            "a directory that `python -m workloads train --output DIR` wrote, e.g. a search's "
            "WORKDIR/trials/<trial>/model"
        )


def promote_trained_model(
    trained_url: str, base_url: str, model_name: str = MODEL_NAME, warmup_data: str | None = None
) -> tuple[int, str]:
    """Exports a trained-model directory and publishes it as the next version under ``base_url``."""
    from workloads.training import trained_model

    require_trained_model(trained_url)
    model = trained_model.load_model(trained_url)
    images = _warmup_images(warmup_data)
    names = trained_class_names(trained_url, warmup_data)
    source = json.dumps(provenance(trained_url), indent=1)

    def build(directory: pathlib.Path) -> None:
        export_saved_model(model, directory, model_name=model_name, warmup_images=images, class_names=names)
        (directory / PROVENANCE_FILE).write_text(source)

    return promote.promote(build, base_url, model_name)


def provenance(trained_url: str) -> dict[str, str]:
    """Which trained model an export comes from: its URL and the digest of its training record (which a
    new training run rewrites, so a model trained again in the same directory is another model)."""
    from workloads.training import trained_model

    record = storage.read_bytes(storage.join(trained_url, trained_model.METADATA_FILE))
    return {"trained_model": trained_url, "training_record_sha256": hashlib.sha256(record).hexdigest()}


def newest_version_if_from(trained_url: str, base_url: str, model_name: str) -> int | None:
    """The store's newest version of ``model_name`` if it was promoted from ``trained_url`` as it is now."""
    model_url = storage.join(base_url, model_name)
    existing = promote.versions(model_url)
    if not existing:
        return None
    recorded = storage.join(model_url, str(existing[-1]), str(PROVENANCE_FILE))
    if not storage.exists(recorded) or json.loads(storage.read_bytes(recorded)) != provenance(trained_url):
        return None
    return existing[-1]


def export_trained_model(
    trained_url: str, output_url: str, warmup_data: str | None = None, model_name: str = MODEL_NAME
) -> None:
    """Exports a trained-model directory as a SavedModel at ``output_url`` (a plain directory).

    Local: built beside the target and renamed into place (an existing export is replaced whole).
    Remote: built locally and uploaded with ``saved_model.pb`` last.
    """
    import shutil
    import tempfile
    import uuid

    from workloads.training import trained_model

    require_trained_model(trained_url)
    model = trained_model.load_model(trained_url)
    images = _warmup_images(warmup_data)
    names = trained_class_names(trained_url, warmup_data)
    if storage.is_local(output_url):
        target = storage.local_path(output_url)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.building-{uuid.uuid4().hex[:8]}")
        try:
            export_saved_model(model, staging, model_name=model_name, warmup_images=images, class_names=names)
            if target.exists():
                retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(target, retired)
                os.rename(staging, target)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return
    with tempfile.TemporaryDirectory(prefix="mlstack-export-") as tmp:
        staging = pathlib.Path(tmp) / "model"
        export_saved_model(model, staging, model_name=model_name, warmup_images=images, class_names=names)
        files = sorted(
            (p for p in staging.rglob("*") if p.is_file()), key=lambda p: p.name == promote.SAVED_MODEL_PB
        )
        for path in files:
            storage.upload_file(path, storage.join(output_url, str(path.relative_to(staging))))
