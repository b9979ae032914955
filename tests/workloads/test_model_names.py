"""A model name is one safe path segment wherever it is accepted: flags, model configs, promotion."""

import dataclasses

import pytest

from workloads import cli
from workloads.serving import tfs_config
from workloads.serving.tfs_config import ServedModel, TfsConfigError
from workloads.workflow import promote

UNSAFE = ["../x", "..", ".", "a/b", "/abs", "a\\b", "", " x", "x\n", "-x", "x.", "a" * 64, "mödel"]
SAFE = ["fashion_mnist", "m", "a" * 63, "v2.1-canary", "A9"]

# The flags each command needs besides --model-name; every command with a --model-name is listed.
OTHER_FLAGS = {
    "select": ["--candidates", "{tmp}/runs", "--data", "{tmp}/data", "--model-base-path", "{base}"],
    "export": ["--model-dir", "{tmp}/run", "--model-base-path", "{base}"],
    "pipeline": ["--workdir", "{tmp}/work"],
    "tfs-config": ["--out-dir", "{tmp}/out", "--model-base-path", "{base}"],
    "serve-dev": ["--model-base-path", "{base}"],
    "predict": [],
    "loadtest": [],
    "infer-worker": [],
    "verify-serving": ["--promoted", "{{}}", "--data", "{tmp}/data"],
    "mirror-models": ["--model-store", "{base}", "--target", "{tmp}/volume"],
}


def commands_with_a_model_name() -> list[str]:
    return [
        name
        for name in cli.COMMANDS
        if "model_name" in {f.name for f in dataclasses.fields(cli.load_command(name).Config)}
    ]


@pytest.mark.parametrize("name", SAFE)
def test_a_safe_model_name_is_accepted(name):
    assert tfs_config.model_name_problem(name) is None
    assert tfs_config.check_model_name(name) == name


@pytest.mark.parametrize("name", UNSAFE)
def test_a_model_name_that_is_not_one_safe_path_segment_is_refused(name):
    assert tfs_config.model_name_problem(name)
    with pytest.raises(TfsConfigError, match="model name must be one path segment"):
        tfs_config.check_model_name(name)
    with pytest.raises(TfsConfigError, match="model name"):
        ServedModel(name, "/models")


def test_the_serving_model_name_obeys_the_rule():
    assert tfs_config.model_name_problem(tfs_config.MODEL_NAME) is None


def test_every_command_with_a_model_name_is_checked_here():
    assert sorted(commands_with_a_model_name()) == sorted(OTHER_FLAGS)


@pytest.mark.parametrize("command", commands_with_a_model_name())
@pytest.mark.parametrize("name", ["../x", "a/b", ".."])
def test_an_unsafe_model_name_flag_exits_2_naming_it_before_any_work(
    command, name, tmp_path, capsys, monkeypatch
):
    module = cli.load_command(command)

    def must_not_run(config):
        pytest.fail(f"{command} ran with --model-name {config.model_name!r}")

    monkeypatch.setattr(module, "run", must_not_run)
    base = tmp_path / "base"
    flags = [arg.format(tmp=tmp_path, base=base) for arg in OTHER_FLAGS[command]]
    assert cli.main([command, *flags, "--model-name", name]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--model-name: must be one path segment" in error[0], error
    assert not any(tmp_path.iterdir())


def test_an_unsafe_model_name_from_the_environment_is_refused_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLSTACK_MODEL_NAME", "../x")
    monkeypatch.setattr(cli.load_command("export"), "run", lambda config: pytest.fail("export ran"))
    assert cli.main(["export", "--model-dir", str(tmp_path / "run"), "--output", str(tmp_path / "o")]) == 2
    assert "--model-name: must be one path segment" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../x", "..", "a/../../x", "/abs"])
def test_promote_refuses_an_unsafe_model_name_and_writes_nothing(tmp_path, name):
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)

    def build(directory):
        directory.mkdir(parents=True)
        (directory / "saved_model.pb").write_text("x")

    with pytest.raises(TfsConfigError, match="model name"):
        promote.promote(build, str(base), name)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
