"""Generated TF Serving configs parse with TF Serving's own definitions and mean what we asked for."""

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from workloads.serving import tfs_config
from workloads.serving.tfs_config import BatchingParameters, ServedModel, TfsConfigError


def test_model_config_parses_with_tf_servings_model_server_config():
    models = [
        ServedModel(
            "fashion_mnist",
            "s3://models/fashion_mnist",
            versions=(3, 4),
            labels=(("canary", 4), ("stable", 3)),
        ),
        ServedModel("other", "/models/other", num_latest=2),
    ]
    message = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(tfs_config.render_model_config(models), message)
    first, second = message.model_config_list.config
    assert first.name == "fashion_mnist" and first.model_platform == "tensorflow"
    assert list(first.model_version_policy.specific.versions) == [3, 4]
    assert dict(first.version_labels) == {"stable": 3, "canary": 4}
    assert second.model_version_policy.latest.num_versions == 2
    assert tfs_config.parse_model_config(tfs_config.render_model_config(models)) == models


def test_paths_with_quotes_survive_the_round_trip():
    model = ServedModel("m", '/models/we"ird\\path')
    assert tfs_config.parse_model_config(tfs_config.render_model_config([model])) == [model]


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize("cores", [1, 2, 16])
def test_batching_profiles_follow_the_guide_and_parse_field_by_field(device, cores):
    params = tfs_config.batching_profile(device, cores)
    assert params.num_batch_threads == cores
    if device == "gpu":
        assert params.max_enqueued_batches == params.num_batch_threads
        assert params.max_batch_size >= 256
    else:
        assert params.batch_timeout_micros <= 10_000
    assert tfs_config.parse_batching_parameters(tfs_config.render_batching_parameters(params)) == params


def test_gpu_and_cpu_profiles_differ_where_the_guide_says_they_should():
    cpu, gpu = tfs_config.batching_profile("cpu", 8), tfs_config.batching_profile("gpu", 8)
    assert gpu.max_batch_size > cpu.max_batch_size


def test_monitoring_config_exposes_prometheus_at_the_standard_path():
    text = tfs_config.render_monitoring_config()
    assert tfs_config.parse_monitoring_config(text) == "/monitoring/prometheus/metrics"


@pytest.mark.parametrize(
    "text",
    [
        "max_batch_size { value: 8 }\nbatch_timeout_microseconds { value: 1 }\n",  # misspelt field
        "max_batch_size: 8\n",  # wrapper type written as a scalar
        "allowed_batch_sizes: big\n",
    ],
)
def test_batching_fields_unknown_to_tf_serving_are_rejected(text):
    with pytest.raises(TfsConfigError, match="BatchingParameters"):
        tfs_config.parse_batching_parameters(text)


def test_monitoring_fields_unknown_to_tf_serving_are_rejected():
    with pytest.raises(TfsConfigError):
        tfs_config.parse_monitoring_config("prometheus_config { enabled: true }\n")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ServedModel("m", "/p", labels=(("stable", 3),)), "not served"),
        (lambda: ServedModel("m", "/p", versions=(3, 3)), "distinct"),
        (lambda: ServedModel("bad name", "/p"), "model name"),
        (lambda: ServedModel("m", "/p", versions=(1,), labels=(("Stable", 1),)), "lower-case"),
        (lambda: BatchingParameters(8, 0, 1, 1, allowed_batch_sizes=(2, 4)), "end at max_batch_size"),
        (lambda: BatchingParameters(0, 0, 1, 1), "max_batch_size"),
        (lambda: tfs_config.render_model_config([ServedModel("m", "/a"), ServedModel("m", "/b")]), "unique"),
        (lambda: tfs_config.batching_profile("tpu", 2), "device"),
    ],
)
def test_settings_tf_serving_would_reject_fail_with_a_reason(build, message):
    with pytest.raises(TfsConfigError, match=message):
        build()
