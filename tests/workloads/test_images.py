"""Container images: hadolint-clean, pinned, non-root, no build tools in the final stage, and every
command an image or the image workflow runs exists in the CLI. (No base image can be pulled here;
the workflow builds them in CI.)"""

import json
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from workloads import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "workloads" / "images").glob("*.Dockerfile"))
WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "clang", "cmake")
# What a final stage may install from Debian: a runtime its program needs (Spark's JVM), never a tool.
RUNTIME_PACKAGES = {"spark.Dockerfile": ("openjdk-17-jre-headless",)}


def commands() -> set[str]:
    parser = cli.build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    return set(subparsers.choices)


def stages(dockerfile: pathlib.Path) -> list[list[str]]:
    """Instructions per build stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


def instruction(stage: list[str], name: str) -> list[str]:
    return [line[len(name) + 1 :].strip() for line in stage if line.upper().startswith(name + " ")]


def test_there_are_the_training_workloads_tracking_and_spark_images():
    assert [p.name for p in DOCKERFILES] == [
        "spark.Dockerfile",
        "tracking.Dockerfile",
        "training.Dockerfile",
        "workloads.Dockerfile",
    ]


def test_dockerfiles_are_hadolint_clean():
    hadolint = pathlib.Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_to_exact_tags(dockerfile):
    for stage in stages(dockerfile):
        image = instruction(stage, "FROM")[0].split()[0]
        _, _, tag = image.partition(":")
        assert re.fullmatch(r"\d+\.\d+\.\d+-[a-z]+(-[a-z]+)?", tag), f"{image} is not an exact version tag"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_final_stage_runs_as_non_root_without_build_tools(dockerfile):
    final = stages(dockerfile)[-1]
    assert "slim" in instruction(final, "FROM")[0]
    users = instruction(final, "USER")
    assert users and users[-1] not in {"0", "root"}
    runs = " ".join(instruction(final, "RUN"))
    assert not any(re.search(rf"\b{re.escape(tool)}\b", runs) for tool in BUILD_TOOLS)
    assert "pip install" not in runs
    installed = re.findall(r"apt-get install -y --no-install-recommends ((?:[\w.+:~-]+=[\w.+:~-]+ ?)+)", runs)
    assert runs.count("apt-get install") == len(installed), "apt-get install only pinned, without extras"
    names = {package.split("=")[0] for line in installed for package in line.split()}
    assert names <= set(RUNTIME_PACKAGES.get(dockerfile.name, ())), f"{dockerfile.name} installs {names}"
    assert any("--from=build" in c for c in instruction(final, "COPY"))


# The tracking image runs `mlflow server` (infra/specs/tracking.py), not the workloads CLI.
WORKLOADS_DOCKERFILES = [p for p in DOCKERFILES if p.name != "tracking.Dockerfile"]


TRACKING_SMOKE = "server"  # the tracking image's smoke command: mlflow's


def test_the_tracking_image_runs_mlflow():
    final = stages(ROOT / "workloads" / "images" / "tracking.Dockerfile")[-1]
    assert json.loads(instruction(final, "ENTRYPOINT")[-1]) == ["mlflow"]
    assert json.loads(instruction(final, "CMD")[-1])[0] == TRACKING_SMOKE
    mlflow = pathlib.Path(sys.executable).parent / "mlflow"  # the same pinned release as the image's
    assert subprocess.run([str(mlflow), TRACKING_SMOKE, "--help"], capture_output=True).returncode == 0


@pytest.mark.parametrize("dockerfile", WORKLOADS_DOCKERFILES, ids=lambda p: p.name)
def test_the_image_entry_point_and_default_command_exist_in_the_cli(dockerfile):
    final = stages(dockerfile)[-1]
    assert json.loads(instruction(final, "ENTRYPOINT")[-1]) == ["python", "-m", "workloads"]
    command = json.loads(instruction(final, "CMD")[-1])
    assert command[0] == "--help" or command[0] in commands()


def test_every_command_the_workflow_runs_exists_in_the_cli():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    matrix = job["strategy"]["matrix"]["include"]
    for entry in matrix:
        assert (ROOT / entry["dockerfile"]).exists()
        tracking_image = entry["dockerfile"].endswith("tracking.Dockerfile")
        assert entry["smoke"] == TRACKING_SMOKE if tracking_image else entry["smoke"] in commands()
    assert {entry["dockerfile"] for entry in matrix} == {str(p.relative_to(ROOT)) for p in DOCKERFILES}
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    invoked = re.findall(r'docker run --rm "\$\{TAG\}" (\$\{\{ matrix\.smoke \}\}|\S+)', runs)
    assert "${{ matrix.smoke }}" in invoked, "the workflow runs no command in the image"
    for word in invoked:
        assert word in {"--help", "${{ matrix.smoke }}"} or word in commands()
