"""TF Serving's version rules in the development server's model manager.

``fake_loader`` stands in for TensorFlow's SavedModel loading (which the dev-server tests exercise
for real): it records which version directories were loaded, and fails for directories holding a
``broken`` file, so these rules are checked in milliseconds.
"""

from __future__ import annotations

import pathlib

import fsspec
import pytest

from workloads.serving.codes import Code, ServingStatus
from workloads.serving.dev.model_store import ModelManager, discover_versions
from workloads.serving.tfs_config import ServedModel


class FakeModel:
    def __init__(self, name: str, version: int, path: str) -> None:
        self.name, self.version, self.path = name, version, path


class FakeLoader:
    def __init__(self) -> None:
        self.loaded: list[tuple[int, str]] = []

    def __call__(self, name: str, version: int, path: str) -> FakeModel:
        if (pathlib.Path(path) / "broken").exists():
            raise ValueError(f"{path}/saved_model.pb is not a SavedModel")
        assert (pathlib.Path(path) / "saved_model.pb").exists(), "loaded from a local copy with the files"
        self.loaded.append((version, path))
        return FakeModel(name, version, path)


@pytest.fixture
def fake_loader() -> FakeLoader:
    return FakeLoader()


def add_version(base: pathlib.Path, name: str, broken: bool = False) -> pathlib.Path:
    directory = base / name
    directory.mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"stand-in")
    if broken:
        (directory / "broken").touch()
    return directory


def states(manager: ModelManager, name: str = "m") -> dict[int, str]:
    return {s.version: s.state for s in manager.status(name)}


def test_only_directories_named_by_an_integer_are_versions(tmp_path):
    for name in ("1", "2", "007", ".incoming-4", "4.partial", "latest", "-5", "99999999999999999999"):
        add_version(tmp_path, name)
    (tmp_path / "9").write_text("a file, not a directory")
    _, versions = discover_versions(str(tmp_path))
    assert sorted(versions) == [1, 2, 7]


def test_a_missing_base_path_has_no_versions(tmp_path):
    assert discover_versions(str(tmp_path / "absent"))[1] == {}


def test_latest_policy_serves_the_highest_and_loads_before_it_unloads(tmp_path, fake_loader):
    add_version(tmp_path, "1")
    manager = ModelManager([ServedModel("m", str(tmp_path))], loader=fake_loader)
    manager.poll()
    assert states(manager) == {1: "AVAILABLE"}
    add_version(tmp_path, "3")
    add_version(tmp_path, "2")
    manager.poll()
    assert states(manager) == {3: "AVAILABLE", 1: "END"}
    assert [v for v, _ in fake_loader.loaded] == [1, 3]
    assert manager.resolve("m").version == 3


def test_num_latest_and_pinned_versions_choose_what_is_loaded(tmp_path, fake_loader):
    for name in ("1", "2", "3"):
        add_version(tmp_path, name)
    manager = ModelManager(
        [
            ServedModel("two", str(tmp_path), num_latest=2),
            ServedModel("pinned", str(tmp_path), versions=(1, 3)),
        ],
        loader=fake_loader,
    )
    manager.poll()
    assert manager.availability() == {"two": [2, 3], "pinned": [1, 3]}


def test_a_version_that_fails_to_load_is_retried_then_given_up_while_the_old_one_serves(
    tmp_path, fake_loader
):
    add_version(tmp_path, "1")
    manager = ModelManager([ServedModel("m", str(tmp_path))], loader=fake_loader, max_num_load_retries=2)
    manager.poll()
    add_version(tmp_path, "2", broken=True)
    manager.poll()
    assert states(manager) == {2: "LOADING", 1: "AVAILABLE"}  # retrying
    manager.poll()
    manager.poll()
    status = {s.version: s for s in manager.status("m")}
    assert status[2].state == "END" and status[2].error_code == Code.UNKNOWN
    assert "is not a SavedModel" in status[2].error_message
    assert manager.resolve("m").version == 1, "the previous version keeps serving"
    manager.poll()
    assert states(manager) == {2: "END", 1: "AVAILABLE"}, "a version given up on is not retried"


def test_deleting_the_newest_version_rolls_back(tmp_path, fake_loader):
    add_version(tmp_path, "1")
    newest = add_version(tmp_path, "2")
    manager = ModelManager([ServedModel("m", str(tmp_path))], loader=fake_loader)
    manager.poll()
    for child in newest.iterdir():
        child.unlink()
    newest.rmdir()
    manager.poll()
    assert states(manager) == {2: "END", 1: "AVAILABLE"}


@pytest.mark.parametrize(
    ("route", "code", "message"),
    [
        ({"name": "nope"}, Code.NOT_FOUND, "Latest(nope)"),
        ({"name": "m", "version": 5}, Code.NOT_FOUND, "Specific(m, 5)"),
        ({"name": "m", "label": "beta"}, Code.INVALID_ARGUMENT, "Unrecognized servable version label: beta"),
    ],
)
def test_requests_for_what_is_not_served_fail_with_tf_servings_codes(
    tmp_path, fake_loader, route, code, message
):
    add_version(tmp_path, "1")
    manager = ModelManager(
        [ServedModel("m", str(tmp_path), versions=(1,), labels=(("stable", 1),))], loader=fake_loader
    )
    manager.poll()
    assert manager.resolve("m", label="stable").version == 1
    with pytest.raises(ServingStatus) as raised:
        manager.resolve(**route)
    assert raised.value.code == code and message in raised.value.message


def test_a_new_config_adds_and_removes_models(tmp_path, fake_loader):
    add_version(tmp_path / "a", "1")
    add_version(tmp_path / "b", "1")
    manager = ModelManager([ServedModel("a", str(tmp_path / "a"))], loader=fake_loader)
    manager.poll()
    manager.set_config([ServedModel("b", str(tmp_path / "b"))])
    manager.poll()
    assert manager.availability() == {"b": [1]}
    with pytest.raises(ServingStatus, match="Latest"):
        manager.resolve("a")


def test_remote_versions_are_copied_to_local_disk_before_loading(fake_loader):
    fs = fsspec.filesystem("memory")
    fs.pipe({"/remote/m/4/saved_model.pb": b"stand-in", "/remote/m/4/variables/v.data": b"weights"})
    manager = ModelManager([ServedModel("m", "memory://remote/m")], loader=fake_loader)
    manager.poll()
    ((version, path),) = fake_loader.loaded
    assert version == 4 and (pathlib.Path(path) / "variables" / "v.data").read_bytes() == b"weights"
    manager.stop()
    assert not pathlib.Path(path).exists(), "the local copy is removed when the version is unloaded"
    fs.rm("/remote", recursive=True)
