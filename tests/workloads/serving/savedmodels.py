"""``make_test_savedmodel``: test SavedModels made by the real exporter (``workloads.workflow.export``).

An untrained model of the ``plain`` variant (different seeds give different weights, so tests can
tell versions apart), exported with ``export_saved_model`` exactly as the pipeline exports a trained
one: both signatures of docs/interfaces.md and TF Serving's warm-up file. Like the promotion step,
it writes under a temporary name and renames, so a polling server never sees half a version.
"""

from __future__ import annotations

import os
import pathlib
import shutil


def make_test_savedmodel(base_path: pathlib.Path, version: int, seed: int = 0) -> pathlib.Path:
    """Exports version ``version`` under ``base_path`` and returns its directory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from workloads import models
    from workloads.workflow.export import export_saved_model

    base_path.mkdir(parents=True, exist_ok=True)
    final = base_path / str(version)
    staging = base_path / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    export_saved_model(models.build_model("plain", seed=seed), staging)
    staging.rename(final)
    return final
