"""Fixtures for the Pulumi program tests: one mocked program run per example stack, shared by every
test (the runs are plain data, so sharing them is safe), and a stand-in Ansible project."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from tests.infra.program import STACKS, ProgramRun, run_program
from tests.support import control_plane as control_plane_support

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
_RUNS: dict[str, ProgramRun] = {}


@pytest.fixture(scope="session")
def ansible_project(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A copy of the stand-in Ansible project (tests may edit it)."""
    target = tmp_path_factory.mktemp("ansible") / "ansible"
    shutil.copytree(FIXTURES / "ansible", target)
    return target


def program_run(stack: str, ansible_dir: pathlib.Path) -> ProgramRun:
    if stack not in _RUNS:
        run, error, _ = run_program(stack, {"mlstack:ansibleDir": str(ansible_dir)})
        if error is not None:
            raise error
        assert run is not None
        _RUNS[stack] = run
    return _RUNS[stack]


@pytest.fixture(scope="module", params=STACKS)
def run(request: pytest.FixtureRequest, ansible_project: pathlib.Path) -> ProgramRun:
    """The program's declarations for each example stack (computed once per session)."""
    return program_run(request.param, ansible_project)


@pytest.fixture(scope="module")
def aws_run(ansible_project: pathlib.Path) -> ProgramRun:
    return program_run("aws-example", ansible_project)


@pytest.fixture(scope="module")
def baremetal_run(ansible_project: pathlib.Path) -> ProgramRun:
    return program_run("baremetal-example", ansible_project)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory):
    """etcd and kube-apiserver (built by `make control-plane` when missing), once per test process."""
    with control_plane_support.running(tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane
