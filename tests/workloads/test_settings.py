"""The typed config: precedence, conversion, and errors that name the field and its source."""

import dataclasses
import json
from typing import Literal

import pytest

from workloads.core import settings
from workloads.core.settings import CommandConfig, ConfigError, option, positive


@dataclasses.dataclass(frozen=True)
class Example(CommandConfig):
    data: str = option(help="where the data is")
    batch_size: int = option(64, help="global batch", check=positive)
    learning_rate: float = option(0.001, help="step size", check=positive)
    model: Literal["plain", "dropout"] = option("plain", help="variant")
    resume: bool = option(True, help="resume from checkpoints")
    hosts: tuple[str, ...] = option((), help="peers")
    token: str | None = option(None, help="secret", secret=True)

    def validate(self) -> None:
        if self.model == "dropout" and self.batch_size < 2:
            raise ConfigError("--batch-size", "dropout needs at least 2")


def parse(argv, environ=None, config_file=None):
    import argparse

    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, Example)
    return settings.resolve(Example, parser.parse_args(argv), environ or {}, config_file)


def test_flags_win_over_environment_which_wins_over_file(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"data": "from-file", "batch-size": 8, "learning_rate": 0.5}))
    config = parse(["--batch-size", "32"], {"MLSTACK_BATCH_SIZE": "16", "MLSTACK_DATA": "from-env"}, cfg_file)
    assert (config.batch_size, config.data, config.learning_rate) == (32, "from-env", 0.5)


def test_defaults_apply_when_nothing_is_given():
    config = parse(["--data", "x"])
    assert (config.batch_size, config.model, config.resume, config.hosts) == (64, "plain", True, ())


def test_lists_accept_commas_and_spaces_and_booleans_negate():
    config = parse(["--data", "x", "--hosts", "a,b", "c", "--no-resume"])
    assert config.hosts == ("a", "b", "c") and config.resume is False
    assert parse(["--data", "x"], {"MLSTACK_HOSTS": "p, q", "MLSTACK_RESUME": "false"}).hosts == ("p", "q")


@pytest.mark.parametrize(
    ("argv", "environ", "field"),
    [
        ([], {}, "--data"),
        (["--data", "x", "--batch-size", "zero"], {}, "--batch-size"),
        (["--data", "x", "--batch-size", "0"], {}, "--batch-size"),
        (["--data", "x"], {"MLSTACK_LEARNING_RATE": "fast"}, "MLSTACK_LEARNING_RATE"),
        (["--data", "x"], {"MLSTACK_MODEL": "resnet"}, "MLSTACK_MODEL"),
        (["--data", "x", "--model", "dropout", "--batch-size", "1"], {}, "--batch-size"),
    ],
)
def test_bad_values_name_the_field_they_came_from(argv, environ, field):
    with pytest.raises(ConfigError) as caught:
        parse(argv, environ)
    assert caught.value.field == field


def test_unknown_keys_in_the_config_file_are_rejected_with_the_valid_names(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("data: x\nbatchsize: 3\n")
    with pytest.raises(ConfigError, match="batchsize") as caught:
        parse([], {}, cfg_file)
    assert "batch_size" in str(caught.value)


def test_a_malformed_config_file_names_the_file(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text("{not json")
    with pytest.raises(ConfigError, match=str(cfg_file)):
        parse([], {}, cfg_file)


@pytest.mark.parametrize("text", ["data: [unclosed\n", "a: b: c\n", "data: x\n\tbad: tab\n"])
def test_a_malformed_yaml_config_file_is_a_config_error_naming_the_file_and_the_spot(tmp_path, text):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(text)
    with pytest.raises(ConfigError, match=str(cfg_file)) as caught:
        parse([], {}, cfg_file)
    assert caught.value.field == "--config" and "line " in str(caught.value) and "\n" not in str(caught.value)


def test_a_config_file_that_is_not_text_is_a_config_error(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="UTF-8"):
        parse([], {}, cfg_file)


def test_configs_built_in_code_are_type_checked_too():
    with pytest.raises(ConfigError, match="--batch-size"):
        Example(data="x", batch_size="8")
    with pytest.raises(ConfigError, match="--model"):
        Example(data="x", model="resnet")


def test_secrets_are_masked_in_the_public_view():
    assert parse(["--data", "x", "--token", "hunter2"]).public_dict()["token"] == "***"


def test_help_shows_every_field_with_its_default_and_environment_variable():
    import argparse

    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, Example)
    text = parser.format_help()
    for field in dataclasses.fields(Example):
        assert settings.flag_name(field.name) in text
        assert settings.env_name(field.name) in text
    assert "default: 64" in text
