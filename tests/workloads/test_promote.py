"""Promotion into TF Serving's layout: next integer version, never visible half-written."""

import threading

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
