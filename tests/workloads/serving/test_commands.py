"""The serving commands' own rules: settings checked before any work, clear errors, JSON output."""

from __future__ import annotations

import json

import pytest

from tests.workloads.conftest import MODEL
from workloads import cli
from workloads.serving import payloads


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["serve-dev"], "--model-base-path"),
        (["serve-dev", "--model-base-path", "/m", "--model-config-file", "/c"], "--model-base-path"),
        (["serve-dev", "--model-base-path", "/m", "--port", "70000"], "--port"),
        (["predict", "--synthetic", "1", "--version", "1", "--label", "stable"], "--label"),
        (["predict"], "--images"),
        (["predict", "--synthetic", "1", "--server-url", "localhost:8501"], "--server-url"),
        (["loadtest", "--max-error-rate", "2"], "--max-error-rate"),
        (["infer-worker", "--server-url", "grpc://x:8500"], "--server-url"),
        (["infer-worker", "--kafka-config", "security.protocol"], "--kafka-config"),
    ],
)
def test_bad_settings_exit_2_naming_the_flag(argv, flag, capsys):
    assert cli.main(argv) == 2
    assert flag in capsys.readouterr().err


@pytest.mark.xdist_group("dev_server")
@pytest.mark.slow
def test_predict_prints_one_json_line_per_image(dev_server, tmp_path, capsys):
    image = tmp_path / "shirt.png"
    image.write_bytes(payloads.encode_image(payloads.synthetic_images(1)[0], mode="RGB"))
    args = ["--server-url", dev_server.grpc_url, "--model-name", MODEL, "--log-format", "text"]
    assert (
        cli.main(
            ["predict", *args, "--images", str(image), "--synthetic", "2", "--signature", "serving_bytes"]
        )
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == [str(image), "synthetic-0", "synthetic-1"]
    assert all(
        line["model_version"] == 2 and 0 <= line["class_id"] < 10 and line["class_name"] for line in lines
    )


def test_predict_names_a_file_that_is_not_an_image(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    assert cli.main(["predict", "--images", str(bad), "--log-format", "text"]) == 1
    assert f"{bad}: is not a PNG or JPEG image" in capsys.readouterr().err
