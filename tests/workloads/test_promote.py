"""Promotion into TF Serving's layout: next integer version, never visible half-written."""

import logging
import os
import threading
import time

import pytest

from workloads.core import storage
from workloads.workflow import promote


def saved_model(marker):
    def build(directory):
        (directory / "variables").mkdir(parents=True)
        (directory / "variables" / "variables.index").write_text(marker)
        (directory / "saved_model.pb").write_text(marker)

    return build


def test_versions_count_up_from_one_and_earlier_ones_stay(tmp_path):
    assert promote.promote(saved_model("a"), str(tmp_path), "fashion_mnist")[0] == 1
    version, url = promote.promote(saved_model("b"), str(tmp_path), "fashion_mnist")
    assert version == 2 and url == str(tmp_path / "fashion_mnist" / "2")
    assert promote.versions(str(tmp_path / "fashion_mnist")) == [1, 2]
    assert (tmp_path / "fashion_mnist" / "1" / "saved_model.pb").read_text() == "a"


def test_a_failed_build_leaves_no_version_and_no_staging(tmp_path):
    def half_then_fail(directory):
        (directory / "variables").mkdir(parents=True)
        raise RuntimeError("export crashed")

    with pytest.raises(RuntimeError, match="export crashed"):
        promote.promote(half_then_fail, str(tmp_path), "fashion_mnist")
    assert not [p.name for p in (tmp_path / "fashion_mnist").iterdir() if p.name != ".promote.lock"]


def test_while_building_only_a_non_numeric_name_exists(tmp_path):
    seen = []

    def build(directory):
        seen.append(sorted(p.name for p in directory.parent.iterdir()))
        saved_model("x")(directory)

    promote.promote(build, str(tmp_path), "fashion_mnist")
    assert all(not name.isdigit() for name in seen[0])


def test_concurrent_promotions_get_distinct_versions(tmp_path):
    results = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(promote.promote(saved_model(str(i)), str(tmp_path), "m")[0])
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [1, 2, 3, 4]


def test_on_an_object_store_saved_model_pb_is_uploaded_last(s3_bucket, monkeypatch):
    uploaded = []
    real_upload = storage.upload_file

    def recording_upload(local, url):  # a spy: records the order, then uploads for real
        uploaded.append(url.rsplit("/", 1)[-1])
        real_upload(local, url)

    monkeypatch.setattr(storage, "upload_file", recording_upload)
    version, url = promote.promote(saved_model("s3"), f"s3://{s3_bucket}/models", "fashion_mnist")
    assert version == 1 and uploaded[-1] == "saved_model.pb" and len(uploaded) == 2
    assert storage.read_bytes(f"{url}/saved_model.pb") == b"s3"
    assert promote.promote(saved_model("again"), f"s3://{s3_bucket}/models", "fashion_mnist")[0] == 2


def aged(path, seconds):
    """Sets ``path``'s mtime ``seconds`` into the past."""
    when = time.time() - seconds
    os.utime(path, (when, when))
    return path


def test_the_next_promotion_removes_stale_builds_and_keeps_fresh_ones(tmp_path, caplog):
    root = tmp_path / "fashion_mnist"
    root.mkdir()
    stale = root / ".building-stale"  # left by a killed promoter: its lock file is still there, free
    saved_model("old")(stale)
    (root / ".building-stale.lock").touch()
    unlocked = root / ".building-nolock"  # left before builds had lock files
    saved_model("old")(unlocked)
    orphan_lock = root / ".building-gone.lock"  # its build was renamed, then the promoter died
    orphan_lock.touch()
    fresh = root / ".building-fresh"
    saved_model("new")(fresh)
    for path in (stale, unlocked, orphan_lock):
        aged(path, promote.STALE_BUILD_AGE_S + 60)
    aged(fresh, promote.STALE_BUILD_AGE_S - 60)

    with caplog.at_level(logging.INFO, logger=promote.__name__):
        assert promote.promote(saved_model("v1"), str(tmp_path), "fashion_mnist")[0] == 1

    assert sorted(p.name for p in root.iterdir()) == [".building-fresh", ".promote.lock", "1"]
    assert (fresh / "saved_model.pb").read_text() == "new"
    assert "removed 3 stale build(s)" in caplog.text and ".building-stale" in caplog.text


def test_a_build_a_live_promoter_holds_is_kept_however_old(tmp_path):
    root = tmp_path / "fashion_mnist"
    building, release = threading.Event(), threading.Event()
    slow = []

    def slow_build(directory):  # a concurrent promoter, hours into its build
        saved_model("slow")(directory)
        aged(directory, 10 * promote.STALE_BUILD_AGE_S)
        slow.append(directory)
        building.set()
        assert release.wait(30)

    results = []
    thread = threading.Thread(
        target=lambda: results.append(promote.promote(slow_build, str(tmp_path), "fashion_mnist"))
    )
    thread.start()
    try:
        assert building.wait(30)
        assert promote.promote(saved_model("quick"), str(tmp_path), "fashion_mnist")[0] == 1
        assert (slow[0] / "saved_model.pb").read_text() == "slow"
    finally:
        release.set()
        thread.join(30)
    assert results and results[0][0] == 2
    assert (root / "2" / "saved_model.pb").read_text() == "slow"
    assert sorted(p.name for p in root.iterdir()) == [".promote.lock", "1", "2"]
