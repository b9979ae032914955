"""The class names an exported SavedModel carries: ``assets.extra/class_names.json``.

The file is a JSON array of strings, index = class id (the ``class_ids`` output of both signatures):
the names of the dataset the model was trained on, copied from its manifest at export. TF Serving
ignores ``assets.extra/`` apart from its warmup file, so the names travel with every version without
touching the serving signatures; a client that can read the model base path (``predict
--model-base-path``) names the classes of exactly the version that answered.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

from workloads.core import storage
from workloads.core.errors import WorkloadError

CLASS_NAMES_FILE = "assets.extra/class_names.json"


def write(saved_model_dir: pathlib.Path, names: Sequence[str]) -> None:
    """Writes the names into a SavedModel directory that is being built (not yet published)."""
    path = saved_model_dir / CLASS_NAMES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(names), indent=1) + "\n")


def read(saved_model_url: str) -> tuple[str, ...] | None:
    """The names a SavedModel (path or URL) carries; None when it has none (exported before they were)."""
    url = storage.join(saved_model_url, CLASS_NAMES_FILE)
    try:
        names = json.loads(storage.read_bytes(url))
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise WorkloadError(f"{url}: not JSON ({error})") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise WorkloadError(f"{url}: expected a JSON array of class names, got {names!r:.80}")
    return tuple(names)


def for_version(model_base_path: str, model_name: str, version: int) -> tuple[str, ...] | None:
    """The names of one served version. ``model_base_path`` is the directory of the versions (TF
    Serving's ``base_path``, ``serve-dev --model-base-path``) or the one that holds ``<model_name>/``
    (``select``/``export --model-base-path``)."""
    candidates = [storage.join(model_base_path, str(version))]
    candidates.append(storage.join(model_base_path, model_name, str(version)))
    for saved_model in candidates:
        if storage.exists(storage.join(saved_model, "saved_model.pb")):
            return read(saved_model)
    raise WorkloadError(
        f"no SavedModel of version {version} under {model_base_path}: expected {' or '.join(candidates)}"
    )
