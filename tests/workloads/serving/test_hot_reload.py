"""Model versions change under a running development server: promotion, rollback, broken versions, labels."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from tests.workloads.conftest import MODEL
from tests.workloads.serving.processes import start_dev_server, wait_until
from workloads.serving import payloads, tfs_config
from workloads.serving.client import RetryPolicy, ServingError, make_client

pytestmark = [pytest.mark.xdist_group("dev_server"), pytest.mark.slow]
IMAGES = payloads.synthetic_images(2, seed=5)


def states(client) -> dict[int, str]:
    return {s.version: s.state for s in client.model_status()}


class Traffic:
    """Sends gRPC predictions in a loop and records (version, error) for each, until stopped."""

    def __init__(self, client) -> None:
        self.client = client
        self.answers: list[tuple[int | None, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append((self.client.predict_images(IMAGES).model_version, None))
            except ServingError as error:
                self.answers.append((None, str(error)))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_promotion_and_rollback_switch_versions_without_a_failed_request(model_base, tmp_path):
    base = tmp_path / "models" / MODEL
    shutil.copytree(model_base / "1", base / "1")
    server = start_dev_server(
        tmp_path / "server", "--model-base-path", str(base), "--file-system-poll-wait-seconds", "0.2"
    )
    try:
        client = make_client(server.grpc_url, MODEL, retry=RetryPolicy(attempts=1))
        assert states(client) == {1: "AVAILABLE"}
        with Traffic(client) as traffic:
            # An exporter writes under a temporary name: not a number, so never half-loaded.
            shutil.copytree(model_base / "2", base / ".incoming-2")
            wait_until(lambda: len(traffic.answers) > 20, 30, "traffic before the promotion")
            assert states(client) == {1: "AVAILABLE"}
            (base / ".incoming-2").rename(base / "2")
            wait_until(
                lambda: states(client) == {2: "AVAILABLE", 1: "END"}, 60, "version 2 to replace version 1"
            )
            wait_until(lambda: traffic.answers[-1][0] == 2, 30, "answers from version 2")
            # Rollback: delete the bad version and the server goes back to the newest remaining one.
            shutil.rmtree(base / "2")
            wait_until(lambda: states(client).get(1) == "AVAILABLE", 60, "version 1 to be reloaded")
            wait_until(lambda: traffic.answers[-1][0] == 1, 30, "answers from version 1 again")
        errors = [error for _, error in traffic.answers if error]
        assert not errors, (
            f"{len(errors)} of {len(traffic.answers)} requests failed during the switch: {errors[:3]}"
        )
        versions = [version for version, _ in traffic.answers]
        switches = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
        assert switches == [1, 2, 1], "versions must change once per promotion/rollback, never flap"
        client.close()
    finally:
        assert server.terminate() == 0, server.log()[-3000:]


def test_broken_versions_keep_the_old_ones_serving_and_label_moves_take_effect(model_base, tmp_path):
    config = tmp_path / "models.config"
    base = tmp_path / "models" / MODEL

    def write_config(versions: tuple[int, ...], stable: int) -> None:
        model = tfs_config.ServedModel(MODEL, str(base), versions=versions, labels=(("stable", stable),))
        config.write_text(tfs_config.render_model_config([model]))

    shutil.copytree(model_base, base)
    (base / "3").mkdir()
    (base / "3" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    write_config((1, 2, 3), stable=1)
    server = start_dev_server(
        tmp_path / "server",
        "--model-config-file",
        str(config),
        "--model-config-file-poll-wait-seconds",
        "0.3",
        "--file-system-poll-wait-seconds",
        "0.2",
        "--max-num-load-retries",
        "1",
    )
    try:
        client = make_client(server.rest_url, MODEL, retry=RetryPolicy(attempts=1))
        wait_until(lambda: states(client).get(3) == "END", 60, "the broken version to be given up on")
        broken = next(s for s in client.model_status() if s.version == 3)
        assert broken.error_code != "OK" and "3/saved_model.pb is not a SavedModel" in broken.error_message
        assert states(client) == {3: "END", 2: "AVAILABLE", 1: "AVAILABLE"}
        v1, v2 = client.predict_images(IMAGES, version=1), client.predict_images(IMAGES, version=2)
        np.testing.assert_allclose(client.predict_images(IMAGES, label="stable").scores, v1.scores, atol=1e-6)

        write_config((1, 2), stable=2)  # promote by moving the label, as a canary rollout does
        wait_until(
            lambda: np.allclose(client.predict_images(IMAGES, label="stable").scores, v2.scores, atol=1e-6),
            30,
            "label stable to move to version 2",
        )
        with pytest.raises(ServingError, match="Specific"):
            client.predict_images(IMAGES, version=3)
        client.close()
    finally:
        assert server.terminate() == 0, server.log()[-3000:]
