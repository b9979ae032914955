"""The checkpoint commit protocol: atomic, found again on restart, and a failed write loses nothing."""

import json

import pytest

from workloads.core.errors import CheckpointError
from workloads.training.checkpoints import CheckpointStore


def payload(text):
    def write(directory):
        (directory / "weights.bin").write_text(text)
        (directory / "nested").mkdir()
        (directory / "nested" / "optimizer.bin").write_text(text + "-opt")

    return write


def test_a_fresh_directory_has_no_checkpoint(tmp_path):
    assert CheckpointStore(str(tmp_path / "ckpt")).latest() is None


def test_the_latest_checkpoint_holds_step_and_data_position(tmp_path):
    store = CheckpointStore(str(tmp_path))
    store.save(10, epoch=0, batch=10, write=payload("a"), extra={"model": "plain"})
    store.save(20, epoch=1, batch=3, write=payload("b"))
    state = CheckpointStore(str(tmp_path)).latest()
    assert (state.step, state.epoch, state.batch) == (20, 1, 3)
    with store.open(state) as directory:
        assert (directory / "weights.bin").read_text() == "b"
        assert json.loads((directory / "state.json").read_text())["step"] == 20


def test_a_write_that_fails_midway_keeps_the_previous_checkpoint_and_leaves_nothing(tmp_path):
    store = CheckpointStore(str(tmp_path))
    store.save(10, epoch=0, batch=10, write=payload("good"))

    def fails_midway(directory):
        (directory / "weights.bin").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(
        CheckpointError, match=r"step 20 .*No space left.*previous checkpoint \(step 10\) is intact"
    ):
        store.save(20, epoch=0, batch=20, write=fails_midway)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step-000000010"]
    state = store.latest()
    assert state.step == 10
    with store.open(state) as directory:
        assert (directory / "weights.bin").read_text() == "good"


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    store = CheckpointStore(str(tmp_path), keep=2)
    for step in (1, 2, 3, 4):
        store.save(step, epoch=0, batch=step, write=payload(str(step)))
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000000003", "step-000000004"]


def test_staging_left_by_a_killed_writer_is_removed_and_never_read(tmp_path):
    store = CheckpointStore(str(tmp_path))
    store.save(5, epoch=0, batch=5, write=payload("ok"))
    (tmp_path / ".staging-deadbeef").mkdir()
    (tmp_path / ".staging-deadbeef" / "weights.bin").write_text("partial")
    assert store.latest().step == 5
    store.remove_stale_staging()
    assert not list(tmp_path.glob(".staging-*"))


def test_a_corrupt_pointer_is_a_clear_error(tmp_path):
    (tmp_path / "latest.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"latest\.json is not a checkpoint pointer"):
        CheckpointStore(str(tmp_path)).latest()


def test_a_pointer_to_a_missing_checkpoint_is_a_clear_error(tmp_path):
    store = CheckpointStore(str(tmp_path))
    store.save(5, epoch=0, batch=5, write=payload("ok"))
    (tmp_path / "step-000000005" / "weights.bin").unlink()
    (tmp_path / "step-000000005" / "nested" / "optimizer.bin").unlink()
    (tmp_path / "step-000000005" / "nested").rmdir()
    (tmp_path / "step-000000005" / "state.json").unlink()
    (tmp_path / "step-000000005").rmdir()
    with pytest.raises(CheckpointError, match="does not exist"), store.open(store.latest()):
        pass


def test_non_chief_saves_go_to_a_scratch_directory_that_disappears(tmp_path):
    seen = []
    CheckpointStore(str(tmp_path / "ckpt")).save_scratch(lambda d: seen.append(d) or payload("x")(d))
    assert seen and not seen[0].exists()
    assert not (tmp_path / "ckpt").exists()


def test_checkpoints_on_s3_commit_and_restore(s3_bucket):
    store = CheckpointStore(f"s3://{s3_bucket}/runs/a/checkpoints", keep=1)
    store.save(7, epoch=0, batch=7, write=payload("first"))
    store.save(9, epoch=1, batch=0, write=payload("second"))
    state = CheckpointStore(f"s3://{s3_bucket}/runs/a/checkpoints").latest()
    assert (state.step, state.epoch) == (9, 1)
    with store.open(state) as directory:
        assert (directory / "nested" / "optimizer.bin").read_text() == "second-opt"
    import fsspec

    names = fsspec.filesystem("s3").ls(f"{s3_bucket}/runs/a/checkpoints", detail=False)
    assert sorted(n.rsplit("/", 1)[-1] for n in names) == ["latest.json", "step-000000009"]
