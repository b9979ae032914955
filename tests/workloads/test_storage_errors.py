"""Misuse ends in one line, not a traceback: unreachable or misconfigured storage for every scheme, a bad
--config, an export of a directory with no model, a search over missing data, an unwritable cache."""

from __future__ import annotations

import errno
import json
import logging
import os
import pathlib
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from tests.conftest import pick_free_port
from tests.workloads.support import ROOT, run_workloads, subprocess_env
from workloads.core import storage
from workloads.core.errors import DataError, StorageError
from workloads.data import datasets
from workloads.data.shards import ShardCache, ShardSet, ShardWriter

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
)


def offline_env(**extra: str) -> dict[str, str]:
    """A child environment with no AWS credentials or config of this machine's, and no instance metadata."""
    env = subprocess_env(
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
    )
    for name in AWS_VARIABLES:
        env.pop(name, None)
    env.update(extra)
    return env


def error_line(result, *, code: int = 1) -> str:
    """The one line that says why a command failed: stderr holds no traceback and, besides log records
    below error level (a library's "found credentials"), exactly one line: the error's log record, or
    argparse-style text for a config error."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not _is_record_below_error(line)]
    assert len(errors) == 1, result.stderr
    return json.loads(errors[0])["msg"] if errors[0].startswith("{") else errors[0]


def _is_record_below_error(line: str) -> bool:
    try:
        return json.loads(line)["level"] in {"debug", "info", "warning"}
    except (ValueError, KeyError, TypeError):
        return False


def closed_port_url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{pick_free_port()}"


# --- every scheme: the URL, the cause, the setting to check -----------------------------------------


def test_search_over_s3_at_an_unreachable_endpoint_fails_in_seconds_naming_the_endpoint(tmp_path):
    endpoint = closed_port_url("http")
    env = offline_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    began = time.monotonic()
    result = run_workloads(
        "search",
        "--data",
        "s3://bucket/data",
        "--workdir",
        str(tmp_path / "w"),
        "--s3-endpoint",
        endpoint,
        env=env,
        timeout=120,
    )
    elapsed = time.monotonic() - began
    line = error_line(result)
    assert "s3://bucket/data" in line and endpoint in line and "--s3-endpoint" in line
    # botocore's legacy retries took ~13 s; 3 standard attempts refused at once take ~3 s of backoff
    assert elapsed < 12, f"took {elapsed:.1f} s"
    assert not (tmp_path / "w").exists()


def test_s3_clients_give_up_on_an_endpoint_quickly_unless_botocore_is_told_otherwise(monkeypatch):
    for name in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(name, raising=False)
    config = storage.filesystem("s3://bucket/data")[0].config_kwargs
    assert config["connect_timeout"] <= 5 and config["retries"]["total_max_attempts"] <= 3
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")
    assert "retries" not in storage.filesystem("s3://bucket/data")[0].config_kwargs


def test_s3_credentials_are_read_from_the_mounted_secret_each_time_it_is_used(tmp_path, monkeypatch):
    for name in storage.S3_CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(storage.S3_CREDENTIALS_DIR_ENV, str(tmp_path))
    with pytest.raises(StorageError) as raised:
        storage.filesystem("s3://bucket/models")
    message = str(raised.value)
    assert message.startswith(
        f"s3://bucket/models: cannot read the S3 credential {tmp_path}/AWS_ACCESS_KEY_ID"
    )
    assert f"mount a Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY at {tmp_path}" in message
    assert "\n" not in message
    for value in ("first", "rotated"):  # the kubelet updates a mounted Secret in place
        for name in storage.S3_CREDENTIAL_ENV:
            (tmp_path / name).write_text(f"{value}-{name}\n")
        fs = storage.filesystem("s3://bucket/models")[0]
        assert (fs.key, fs.secret) == (f"{value}-AWS_ACCESS_KEY_ID", f"{value}-AWS_SECRET_ACCESS_KEY")


def test_search_over_s3_without_credentials_says_which_variables_to_set(tmp_path, s3_endpoint):
    result = run_workloads(
        "search",
        "--data",
        "s3://bucket/data",
        "--workdir",
        str(tmp_path / "w"),
        "--s3-endpoint",
        s3_endpoint,
        env=offline_env(),
        timeout=120,
    )
    line = error_line(result)
    assert "s3://bucket/data" in line and "credentials" in line and "AWS_ACCESS_KEY_ID" in line


def test_s3_without_its_client_package_names_the_package(tmp_path):
    code = (
        "import sys; sys.modules['s3fs'] = None; from workloads import cli; "
        f"sys.exit(cli.main(['search', '--data', 's3://bucket/data', '--workdir', {str(tmp_path / 'w')!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=offline_env(), capture_output=True, text=True, timeout=120
    )
    line = error_line(result)
    assert "s3://bucket/data" in line and "pip install s3fs" in line


def test_reading_hdfs_with_no_namenode_listening_fails_in_seconds_naming_the_address(tmp_path):
    url = closed_port_url("hdfs") + "/data"
    began = time.monotonic()
    result = run_workloads(
        "search", "--data", url, "--workdir", str(tmp_path / "w"), env=offline_env(), timeout=120
    )
    elapsed = time.monotonic() - began
    line = error_line(result)
    assert url in line and "Connection refused" in line and "NameNode" in line
    assert "neither a shard directory" not in line
    # hdfs-native's default retries (HDFS's failover settings) took minutes; ours give up after ~6 s
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_hdfs_clients_give_up_on_a_namenode_quickly_unless_the_hadoop_configuration_says_otherwise(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("HADOOP_HOME", raising=False)
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    options = storage.filesystem("hdfs://127.0.0.1:1/data")[0].storage_options
    assert options["dfs.client.failover.max.attempts"] == "4"
    (tmp_path / "hdfs-site.xml").write_text(
        "<configuration><property><name>dfs.client.failover.max.attempts</name><value>15</value>"
        "</property></configuration>"
    )
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    options = storage.filesystem("hdfs://127.0.0.1:2/data")[0].storage_options
    assert "dfs.client.failover.max.attempts" not in options  # hdfs-native reads the site's 15
    assert options["dfs.client.failover.sleep.max.millis"] == "2000"


def test_webhdfs_acts_as_the_hadoop_user_not_as_the_anonymous_web_user(monkeypatch):
    monkeypatch.setenv("HADOOP_USER_NAME", "mlstack")
    assert storage.filesystem("webhdfs://127.0.0.1:1/data")[0].pars["user.name"] == "mlstack"
    assert storage.filesystem("webhdfs://alice@127.0.0.1:1/data")[0].pars["user.name"] == "alice"


def test_reading_webhdfs_with_nothing_listening_is_a_connection_error_not_a_missing_dataset(tmp_path):
    url = closed_port_url("webhdfs") + "/data"
    result = run_workloads(
        "search", "--data", url, "--workdir", str(tmp_path / "w"), env=offline_env(), timeout=120
    )
    line = error_line(result)
    assert url in line and "Connection refused" in line and "WebHDFS" in line
    assert "neither a shard directory" not in line


def test_writing_webhdfs_with_nothing_listening_fails_in_one_line(tmp_path):
    url = closed_port_url("webhdfs") + "/data"
    result = run_workloads(
        "ingest",
        "--output",
        url,
        "--synthetic-train",
        "8",
        "--synthetic-test",
        "8",
        env=offline_env(),
        timeout=120,
    )
    line = error_line(result)
    assert url in line and "Connection refused" in line


def test_a_local_output_under_a_regular_file_fails_in_one_line_naming_the_path(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    output = tmp_path / "afile" / "data"
    result = run_workloads(
        "ingest", "--output", str(output), "--synthetic-train", "8", "--synthetic-test", "8", timeout=120
    )
    line = error_line(result)
    assert str(output) in line and "not a directory" in line.lower()


def test_an_unknown_scheme_is_a_storage_error():
    with pytest.raises(StorageError, match="nosuchscheme://"):
        storage.filesystem("nosuchscheme://bucket/data")


def test_resolving_an_unreachable_dataset_raises_a_storage_error_with_url_cause_and_hint():
    url = closed_port_url("webhdfs") + "/data"
    with pytest.raises(StorageError) as caught:
        datasets.resolve_splits(url)
    error = caught.value
    assert error.url.startswith(url) and "Connection refused" in error.cause and "WebHDFS" in error.hint
    assert isinstance(error, OSError)  # callers that shrug off I/O failures (checkpoint pruning) still do


def test_a_missing_file_stays_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(str(tmp_path / "missing"))
    fs, path = storage.filesystem("memory://mlstack-test-missing/nothing")
    assert not fs.exists(path)
    with pytest.raises(FileNotFoundError):
        fs.cat_file(path)


# --- the other misuses --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["data: [unclosed\n", "data: x\n\tbad: tab\n", "a: b: c\n"])
def test_a_malformed_yaml_config_exits_2_in_one_line_naming_the_file(tmp_path, text):
    config = tmp_path / "settings.yaml"
    config.write_text(text)
    result = run_workloads("search", "--config", str(config), timeout=120)
    line = error_line(result, code=2)
    assert str(config) in line and "--config" in line


def test_export_of_a_directory_with_no_model_fails_in_one_line_naming_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_workloads(
        "export", "--model-dir", str(empty), "--output", str(tmp_path / "out"), timeout=120
    )
    line = error_line(result)
    assert str(empty) in line and "model.keras" in line and "train --output" in line
    assert not (tmp_path / "out").exists()


def test_search_over_a_missing_dataset_fails_before_any_trial_starts(tmp_path):
    workdir = tmp_path / "w"
    began = time.monotonic()
    result = run_workloads(
        "search", "--data", str(tmp_path / "missing"), "--workdir", str(workdir), timeout=120
    )
    elapsed = time.monotonic() - began
    line = error_line(result)
    assert str(tmp_path / "missing") in line and "ingest" in line
    assert not (workdir / "trials").exists() and not (workdir / "search.json").exists()
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_search_over_a_dataset_with_an_empty_training_split_fails_before_any_trial_starts(tmp_path):
    data = tmp_path / "data"
    ShardWriter(str(data / "train"), shard_size=4).publish()
    with pytest.raises(DataError, match="no records"):
        datasets.check_splits(str(data))
    workdir = tmp_path / "w"
    result = run_workloads("search", "--data", str(data), "--workdir", str(workdir), timeout=120)
    assert "no records" in error_line(result)
    assert not (workdir / "trials").exists()


def test_pipeline_checks_its_source_before_any_stage(tmp_path):
    workdir = tmp_path / "w"
    result = run_workloads(
        "pipeline", "--data", str(tmp_path / "no-idx"), "--workdir", str(workdir), timeout=120
    )
    line = error_line(result)
    assert str(tmp_path / "no-idx") in line
    assert not workdir.exists() and "== [" not in result.stdout


def test_the_pipeline_data_stage_needs_a_test_split(tmp_path, small_dataset):
    with pytest.raises(DataError, match="test/"):
        datasets.check_splits(str(small_dataset / "train"), ("train", "test"))
    assert datasets.check_splits(str(small_dataset), ("train", "test")).test == str(small_dataset / "test")


# --- a cache directory that cannot be written ---------------------------------------------------------


@pytest.fixture
def remote_shards():
    """Two shards of a 4-record dataset on fsspec's in-memory filesystem (read through the cache)."""
    url = f"memory://mlstack-cache-test/{uuid.uuid4().hex[:8]}"
    writer = ShardWriter(url, shard_size=2)
    images = np.arange(4 * 28 * 28, dtype=np.uint32).reshape(4, 28, 28).astype(np.uint8)
    writer.write(images, np.array([0, 1, 2, 3], np.uint8))
    writer.publish()
    return url, images


def unwritable(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory nobody can create, root included: its parent is a regular file."""
    (tmp_path / "afile").write_text("a file, not a directory")
    return tmp_path / "afile" / "cache"


def test_an_unwritable_cache_directory_falls_back_to_a_temporary_one_with_a_warning(
    tmp_path, monkeypatch, remote_shards, caplog
):
    url, images = remote_shards
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cache = ShardCache(unwritable(tmp_path))
    with caplog.at_level(logging.WARNING):
        read, _ = ShardSet.open(url, cache=cache).read_all()
    np.testing.assert_array_equal(read, images)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "--cache-dir" in warnings[0] and "MLSTACK_CACHE_DIR" in warnings[0]
    assert str(tmp_path / "afile" / "cache") in warnings[0]
    assert cache.directory.parent == tmp_path / "tmp" and len(list(cache.directory.glob("*.bin"))) == 2


def test_a_cache_with_no_writable_fallback_fails_in_one_line_naming_the_setting(
    tmp_path, monkeypatch, remote_shards
):
    url, _ = remote_shards
    monkeypatch.setattr("tempfile.tempdir", str(unwritable(tmp_path)))
    with pytest.raises(StorageError) as caught:
        ShardSet.open(url, cache=ShardCache(tmp_path / "afile" / "other")).shard(0)
    assert "--cache-dir" in str(caught.value) and "MLSTACK_CACHE_DIR" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_copies_in_a_read_only_cache_are_still_used(tmp_path, monkeypatch, remote_shards):
    url, images = remote_shards
    ShardSet.open(url, cache=ShardCache(tmp_path / "filled")).read_all()  # fills the cache
    shard_set = ShardSet.open(url, cache=ShardCache(tmp_path / "filled"))
    fs, path = storage.filesystem(url)
    fs.rm(path, recursive=True)  # only the cached copies are left to read

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "utime", read_only)
    np.testing.assert_array_equal(shard_set.read_all()[0], images)
