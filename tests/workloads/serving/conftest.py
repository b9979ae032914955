"""Shared serving fixtures: test SavedModels and one development server per test worker."""

from __future__ import annotations

import pathlib

import pytest

from tests.workloads.serving.processes import DevServer, start_dev_server
from tests.workloads.serving.savedmodels import make_test_savedmodel
from workloads.serving import tfs_config

MODEL = tfs_config.MODEL_NAME


@pytest.fixture(scope="session")
def model_base(tmp_path_factory) -> pathlib.Path:
    """``<tmp>/fashion_mnist/{1,2}``: two versions with different weights (``make_test_savedmodel``)."""
    base = tmp_path_factory.mktemp("models") / MODEL
    make_test_savedmodel(base, 1, seed=1)
    make_test_savedmodel(base, 2, seed=2)
    return base


@pytest.fixture(scope="session")
def dev_server(model_base, tmp_path_factory) -> DevServer:
    """serve-dev over versions 1 and 2, labels stable=1 and canary=2, batching on, REST and gRPC.

    The request size limit is 1 MiB so the oversize test need not send much.
    """
    workdir = tmp_path_factory.mktemp("serve-dev")
    config = workdir / "models.config"
    config.write_text(
        tfs_config.render_model_config(
            [
                tfs_config.ServedModel(
                    MODEL, str(model_base), versions=(1, 2), labels=(("canary", 2), ("stable", 1))
                )
            ]
        )
    )
    server = start_dev_server(
        workdir, "--model-config-file", str(config), "--enable-batching", "--max-request-bytes", str(1 << 20)
    )
    yield server
    code = server.terminate()
    assert code == 0, f"serve-dev exited {code} on SIGTERM:\n{server.log()[-3000:]}"
