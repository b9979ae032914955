"""Stack config: every mistake is an error that names the key and what it accepts, before any resource."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from infra import config
from infra.config import ConfigError, parse, stack
from tests.infra.program import ROOT, STACKS, run_program, stack_settings
from workloads import models
from workloads.streaming import kafka as kafka_services
from workloads.streaming.infer_worker import MICRO_BATCH_SIZE, MICRO_BATCH_WAIT_MS

pytestmark = pytest.mark.xdist_group(name="infra-program")


def settings(stack: str) -> dict[str, Any]:
    return {k.split(":", 1)[1]: v for k, v in stack_settings(stack).items() if k.startswith("mlstack:")}


def error_for(values: dict[str, Any], secret_keys: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as raised:
        parse(values, secret_keys)
    return str(raised.value)


@pytest.fixture
def aws() -> dict[str, Any]:
    return copy.deepcopy(settings("aws-example"))


@pytest.fixture
def baremetal() -> dict[str, Any]:
    return copy.deepcopy(settings("baremetal-example"))


@pytest.mark.parametrize("stack", STACKS)
def test_the_example_stacks_are_valid(stack):
    parsed = parse(settings(stack))
    assert parsed.node_provider == {"aws-example": "aws", "baremetal-example": "existing"}[stack]


def test_a_missing_required_key_is_named(aws):
    del aws["imageRegistry"]
    assert error_for(aws) == "mlstack:imageRegistry: missing; this setting is required"


def test_a_missing_nested_key_is_named_with_its_path(aws):
    del aws["nodePools"][1]["instanceType"]
    assert error_for(aws).startswith("mlstack:nodePools[1].instanceType: missing")


def test_a_wrong_type_names_the_key_and_the_expected_type(aws):
    aws["nodePools"][0]["count"] = "two"
    assert error_for(aws) == "mlstack:nodePools[0].count: expected an integer, got 'two' (str)"


def test_a_list_where_an_object_belongs_is_rejected(aws):
    aws["serving"] = ["minReplicas", 2]
    assert "mlstack:serving: expected an object" in error_for(aws)


def test_a_gpu_pool_without_a_gpu_instance_type_is_rejected_with_the_gpu_families(aws):
    aws["nodePools"][1]["instanceType"] = "m6i.2xlarge"
    message = error_for(aws)
    assert message.startswith("mlstack:nodePools[1].instanceType: 'm6i.2xlarge' has no NVIDIA GPU")
    assert "g5" in message and "p4d" in message


def test_min_replicas_above_max_is_rejected(aws):
    aws["serving"]["minReplicas"] = 5
    aws["serving"]["maxReplicas"] = 3
    message = error_for(aws)
    assert message.startswith("mlstack:serving.minReplicas: 5 is above maxReplicas 3")
    assert "1 <= minReplicas <= maxReplicas" in message


@pytest.mark.parametrize("version", ["v1.29.4+k3s1", "v1.40.0+k3s1"])
def test_an_unsupported_kubernetes_version_lists_the_allowed_ones(aws, version):
    aws["kubernetesVersion"] = version
    message = error_for(aws)
    assert message.startswith(f"mlstack:kubernetesVersion: Kubernetes {version[1:5]}")
    assert "1.31, 1.32, 1.33, 1.34" in message


def test_a_kubernetes_version_that_is_not_a_k3s_release_is_rejected(aws):
    aws["kubernetesVersion"] = "1.33"
    assert "is not a k3s release; use vMAJOR.MINOR.PATCH+k3sN" in error_for(aws)


def test_an_unknown_value_lists_the_allowed_values(aws):
    aws["nodeProvider"] = "gcp"
    assert error_for(aws) == "mlstack:nodeProvider: 'gcp' is not allowed; allowed values: aws, existing"


def test_an_unknown_group_lists_the_ansible_groups(aws):
    aws["nodePools"][0]["groups"].append("etcd")
    message = error_for(aws)
    assert message.startswith("mlstack:nodePools[0].groups[3]: 'etcd' is not a group")
    assert "kafka_brokers" in message


def test_a_misspelt_key_is_rejected_with_a_suggestion(aws):
    aws["serving"]["maxReplica"] = 4
    assert error_for(aws) == "mlstack:serving.maxReplica: unknown setting; did you mean 'maxReplicas'?"


def test_latest_is_never_an_image_version(aws):
    aws["imageVersion"] = "latest"
    assert "mlstack:imageVersion: 'latest' is not allowed" in error_for(aws)


def test_an_unpinned_serving_image_is_rejected(aws):
    aws["serving"]["image"] = "tensorflow/serving:latest"
    assert "mlstack:serving.image" in error_for(aws)


def test_secrets_must_be_set_as_secrets(aws):
    aws["k3sToken"] = "plaintext"
    message = error_for(aws)
    assert message.startswith("mlstack:k3sToken: is stored in plain text")
    assert "pulumi config set --secret k3sToken" in message
    assert parse(aws, ("k3sToken",)).has_k3s_token


def test_aws_needs_admin_cidrs_so_ssh_is_never_open_by_accident(aws):
    aws["adminCidrs"] = []
    assert error_for(aws).startswith("mlstack:adminCidrs: missing; list the CIDR blocks")


def test_a_bad_cidr_is_named(aws):
    aws["adminCidrs"] = ["203.0.113.0/33"]
    assert error_for(aws).startswith("mlstack:adminCidrs[0]: '203.0.113.0/33' is not a CIDR block")


def test_time_slicing_needs_two_or_more_replicas(aws):
    aws["gpuSharing"] = {"strategy": "time-slicing", "replicas": 1}
    assert error_for(aws).startswith("mlstack:gpuSharing.replicas: time-slicing shares each GPU")


def test_gpu_work_without_gpu_nodes_is_rejected(baremetal):
    for host in baremetal["hosts"]:
        host["groups"] = [g for g in host["groups"] if g != "gpu_nodes"]
    assert error_for(baremetal) == "mlstack:workflow.gpusPerWorker: asks for GPUs but no node is in gpu_nodes"


def test_an_even_number_of_k3s_servers_is_rejected(baremetal):
    baremetal["hosts"][1]["groups"] = ["k3s_servers"]
    assert "embedded etcd needs an odd number" in error_for(baremetal)


def test_existing_hosts_need_a_node_cidr_that_holds_them(baremetal):
    baremetal["nodeCidr"] = "10.0.0.0/24"
    assert (
        error_for(baremetal)
        == "mlstack:hosts[0].privateAddress: 192.0.2.10 is outside mlstack:nodeCidr 10.0.0.0/24"
    )


def test_hdfs_datanodes_need_data_directories(baremetal):
    del baremetal["hosts"][1]["hdfsDataDirs"]
    assert error_for(baremetal).startswith("mlstack:hosts[1].hdfsDataDirs: missing")


def test_settings_of_the_other_provider_are_rejected(baremetal):
    baremetal["nodePools"] = []
    assert (
        error_for(baremetal)
        == "mlstack:nodePools: applies to nodeProvider 'aws' only; remove it for 'existing'"
    )


def test_serving_must_say_where_models_come_from(aws):
    del aws["serving"]["modelSource"]
    assert error_for(aws).startswith(
        "mlstack:serving.modelSource: missing; say where TF Serving reads models"
    )


def test_the_stock_tf_serving_image_serves_an_hdfs_store_through_the_mirror(aws):
    aws["serving"]["modelSource"] = {"kind": "hdfs"}
    assert parse(aws).serving.model_source.kind == "hdfs"


def test_an_s3_store_needs_the_secret_its_readers_and_writers_share(aws):
    del aws["serving"]["modelSource"]["credentialsSecret"]
    message = error_for(aws)
    assert message.startswith(
        "mlstack:serving.modelSource.credentialsSecret: missing; name a Secret holding "
    )
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in mlstack-serving and mlstack-training" in message
    assert "\n" not in message


@pytest.mark.parametrize("endpoint", ["minio:9000", "http://minio:9000/bucket", "ftp://minio"])
def test_an_s3_endpoint_is_an_http_url_without_a_path(aws, endpoint):
    aws["serving"]["modelSource"]["s3Endpoint"] = endpoint
    assert error_for(aws) == (
        f"mlstack:serving.modelSource.s3Endpoint: {endpoint!r} must be an http(s)://host[:port] URL (no path), "
        "e.g. http://minio.example:9000"
    )


def test_a_stack_that_still_lists_training_jobs_is_refused_saying_what_to_do_instead(aws):
    aws["trainingJobs"] = [{"name": "fmnist", "framework": "tensorflow", "strategy": "multi-worker-mirrored"}]
    message = error_for(aws)
    assert message.startswith("mlstack:trainingJobs: one-shot training jobs are no longer stack state")
    assert "python -m workloads workflow" in message and "docs/workflow.md" in message
    assert "\n" not in message


def test_the_workflow_defaults_are_the_templates_defaults(baremetal):
    from infra.specs.workflow import WorkflowDefaults

    del baremetal["workflow"]
    parsed, default = parse(baremetal).workflow, WorkflowDefaults()
    assert (parsed.parallelism, parsed.memo_max_age, parsed.checkpoint_every) == (
        default.parallelism,
        default.memo_max_age,
        default.checkpoint_every,
    )
    assert (parsed.step_resources, parsed.trial_resources) == (
        default.step_resources,
        default.trial_resources,
    )
    assert parsed.gpus_per_worker == default.gpus_per_worker
    assert parsed.retrain is None, "periodic retraining is off by default"


@pytest.mark.parametrize(
    ("retrain", "message"),
    [
        ({"framework": "jax"}, "framework: 'jax' is not allowed; allowed values: tensorflow, pytorch"),
        ({"models": ["resnet"]}, "models: unknown model(s) ['resnet']"),
        ({"models": []}, "models: must list at least one value"),
        ({"learningRates": [0]}, "learningRates: must all be greater than 0"),
        ({"batchSizes": [255]}, "batchSizes: the global batch size 255 must be a multiple of the 2 workers"),
        ({"workersPerTrial": 0}, "workersPerTrial: must be greater than 0"),
        ({"minTrials": 7}, "minTrials: is 7, but the grid has only 6 trial(s)"),
        ({"minWorkersPerTrial": 1}, "minWorkersPerTrial: only PyTorch trials are elastic"),
        (
            {"framework": "pytorch", "minWorkersPerTrial": 3},
            "minWorkersPerTrial: is 3, more than --workers-per",
        ),
        ({"maxRestarts": -1}, "maxRestarts: "),
        ({"epochs": 0}, "epochs: must be greater than 0, got 0"),
        ({"schedule": "weekly"}, "schedule: 'weekly' is not a cron schedule"),
        ({"epoch": 3}, "epoch: unknown setting; did you mean 'epochs'?"),
    ],
    ids=lambda value: next(iter(value)) if isinstance(value, dict) else None,
)
def test_retraining_is_checked_as_the_workflow_command_checks_its_flags(aws, retrain, message):
    aws["workflow"]["retrain"].update(retrain)
    assert error_for(aws).startswith(f"mlstack:workflow.retrain.{message}")


def test_retraining_needs_a_schedule(aws):
    del aws["workflow"]["retrain"]["schedule"]
    assert error_for(aws) == "mlstack:workflow.retrain.schedule: missing; this setting is required"


@pytest.mark.parametrize("schedule", ["0 3 * * 0", "*/30 * * * *", "0 4 1 * MON-FRI", "@weekly"])
def test_cron_schedules_and_macros_are_accepted(aws, schedule):
    aws["workflow"]["retrain"]["schedule"] = schedule
    assert parse(aws).workflow.retrain.schedule == schedule


@pytest.mark.parametrize("model", models.model_names())
def test_every_model_of_the_registry_can_be_retrained(aws, model):
    aws["workflow"]["retrain"]["models"] = [model]
    assert parse(aws).workflow.retrain.submission.grid.models == (model,)


def test_the_memoization_age_must_be_a_duration(aws):
    aws["workflow"]["memoMaxAge"] = "30 days"
    assert error_for(aws).startswith("mlstack:workflow.memoMaxAge: '30 days' is not a duration")


def test_the_micro_batch_defaults_are_the_inference_workers(aws):
    streaming = parse(aws).streaming
    assert (streaming.micro_batch_size, streaming.micro_batch_wait_ms) == (
        MICRO_BATCH_SIZE,
        MICRO_BATCH_WAIT_MS,
    )


def test_the_micro_batch_keys_set_the_inference_workers_micro_batch(aws):
    aws["streaming"] = {"microBatchSize": 64, "microBatchWaitMs": 20}
    streaming = parse(aws).streaming
    assert (streaming.micro_batch_size, streaming.micro_batch_wait_ms) == (64, 20)


@pytest.mark.parametrize(
    ("old", "new"), [("maxBatchSize", "microBatchSize"), ("maxBatchWaitMs", "microBatchWaitMs")]
)
def test_the_old_micro_batch_keys_are_refused_naming_the_new_key(aws, old, new):
    aws["streaming"] = {old: 16}
    assert error_for(aws) == (
        f"mlstack:streaming.{old}: renamed to streaming.{new} (the inference worker's Kafka micro-batch, "
        "not TF Serving's batching); rename the key in your stack file"
    )


def test_a_micro_batch_wait_of_zero_is_refused_as_the_worker_refuses_it(aws):
    aws["streaming"] = {"microBatchWaitMs": 0}
    assert error_for(aws) == "mlstack:streaming.microBatchWaitMs: must be at least 1, got 0"


def test_a_version_label_must_point_at_a_pinned_version(aws):
    aws["serving"]["labels"] = {"stable": 3}
    assert "mlstack:serving.labels.stable: points at version 3" in error_for(aws)


def test_pulumi_yaml_declares_the_same_scalar_settings_types_and_defaults_as_config_py():
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    assert set(declared) == set(config.PROJECT_KEYS)
    for key, (kind, default) in config.PROJECT_KEYS.items():
        assert declared[key]["type"] == kind, key
        if config.is_required(default):
            assert "default" not in declared[key], f"{key} is required, so Pulumi.yaml must not default it"
        else:
            assert declared[key]["default"] == default, key
        assert declared[key]["description"], key


def test_pulumi_yaml_runs_the_program_in_infra_with_python():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == config.NAMESPACE
    assert project["main"] == "infra/"
    assert project["runtime"]["name"] == "python"


def test_stack_values_are_decoded_from_the_cli_encoding():
    import pulumi

    pulumi.runtime.set_all_config(
        {
            "mlstack:nodePools": '[{"name": "a"}]',
            "mlstack:nodeProvider": "aws",
            "mlstack:k3sToken": "x",
            "aws:region": "r",
        },
        ["mlstack:k3sToken"],
    )
    values, secret = config.stack_values()
    assert values == {"nodePools": [{"name": "a"}], "nodeProvider": "aws", "k3sToken": "[secret]"}
    assert secret == {"k3sToken"}


def test_undecodable_structured_config_names_the_key():
    with pytest.raises(ConfigError, match=r"^mlstack:nodePools: expected a JSON/YAML object"):
        stack.decode("nodePools", "[not json")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mlstack:nodePools": None}, "mlstack:nodePools: missing"),
        ({"mlstack:kubernetesVersion": "v1.28.2+k3s1"}, "mlstack:kubernetesVersion: Kubernetes 1.28"),
    ],
)
def test_a_bad_stack_fails_before_any_resource_is_declared(ansible_project, override, message):
    run, error, fake = run_program("aws-example", {"mlstack:ansibleDir": str(ansible_project), **override})
    assert run is None
    assert isinstance(error, ConfigError)
    assert str(error).startswith(message)
    assert fake.resources == [], "resources were declared before the config was validated"


def test_a_missing_ansible_project_fails_before_any_resource_is_declared(tmp_path):
    run, error, fake = run_program("baremetal-example", {"mlstack:ansibleDir": str(tmp_path)})
    assert run is None
    assert isinstance(error, ConfigError)
    assert str(error).startswith("mlstack:ansibleDir:") and "playbooks/site.yml not found" in str(error)
    assert fake.resources == []


@pytest.mark.parametrize("output", ["s3://bucket/stream/", "/data/stream", "file:///data/stream"])
def test_stream_ingest_output_must_be_reachable_from_the_streaming_pods(aws, output):
    aws["streaming"] = {"ingestOutput": output}
    assert error_for(aws) == (
        f"mlstack:streaming.ingestOutput: {output!r} cannot be written from the streaming pods (no volume is "
        "mounted there and no object-store credentials are wired); use an hdfs:// or webhdfs:// URL, or leave "
        "it empty for the cluster's HDFS"
    )


def test_one_stream_ingester_writes_an_output(aws):
    aws["streaming"] = {"ingestReplicas": 2}
    assert error_for(aws) == (
        "mlstack:streaming.ingestReplicas: 2 ingesters would write one output, whose manifest each rewrites "
        "(records lost or duplicated); use 1: one ingester reads every partition of the topic"
    )


@pytest.mark.parametrize("image", ["tensorflow/serving:2.19.0", "docker.io/tensorflow/serving:2.20.1-gpu"])
def test_a_tf_serving_older_than_the_exporting_tensorflow_is_refused(aws, image):
    from infra.paths import exporting_tensorflow

    major, minor = exporting_tensorflow()
    aws["serving"]["image"] = image
    assert error_for(aws) == (
        f"mlstack:serving.image: {image} cannot load SavedModels exported by TensorFlow {major}.{minor} (the "
        f"training image's); use tensorflow/serving:{major}.{minor}.0 or newer"
    )


@pytest.mark.parametrize(
    "image",
    ["tensorflow/serving:2.21.0-gpu", "tensorflow/serving:3.0.0", "registry.example/tfs:custom-build"],
)
def test_a_tf_serving_that_can_load_them_or_whose_version_is_not_in_its_name_is_accepted(aws, image):
    aws["serving"]["image"] = image
    assert parse(aws).serving.image == image


def test_namespace_budgets_default_per_namespace_and_merge_what_the_stack_sets(baremetal):
    baremetal["namespaceBudgets"] = {"training": {"quota": {"gpus": 2}, "defaultLimit": {"cpu": "2"}}}
    budgets = parse(baremetal).budgets
    assert budgets["serving"] == config.settings.DEFAULT_BUDGETS["serving"]
    default = config.settings.DEFAULT_BUDGETS["training"]
    assert budgets["training"].quota == config.Quota(
        default.quota.cpu, default.quota.memory, 2, default.quota.pods
    )
    assert budgets["training"].default_limit == config.Resources(cpu="2", memory=default.default_limit.memory)


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (
            {"quota": {"cpu": "lots"}},
            "mlstack:namespaceBudgets.serving.quota.cpu: 'lots' is not a Kubernetes quantity",
        ),
        ({"quota": {"pods": 0}}, "mlstack:namespaceBudgets.serving.quota.pods: must be at least 1, got 0"),
        ({"qouta": {}}, "mlstack:namespaceBudgets.serving.qouta: unknown setting; did you mean 'quota'?"),
        (
            {"defaultRequest": {"memory": "2Gi"}},
            "mlstack:namespaceBudgets.serving.defaultRequest.memory: 2Gi is more than defaultLimit.memory (1Gi)",
        ),
    ],
)
def test_a_bad_namespace_budget_is_named(baremetal, budget, message):
    baremetal["namespaceBudgets"] = {"serving": budget}
    assert error_for(baremetal).startswith(message)


def test_a_quota_too_small_for_the_stacks_own_workloads_is_refused(aws):
    """A quota that cannot hold serving at its most would refuse its pods at admission, after `pulumi up`."""
    aws["serving"]["resources"] = {"cpu": "4", "memory": "4Gi"}
    message = error_for(aws)
    assert message.startswith(
        "mlstack:namespaceBudgets.serving.quota.cpu: 16 cannot hold TF Serving at serving.maxReplicas (3) plus "
        "1 rolling-update pod: 17 needed"
    ), message


def test_a_quota_without_gpus_refuses_gpu_trials(aws):
    aws["namespaceBudgets"]["training"]["quota"]["gpus"] = 0
    assert error_for(aws).startswith(
        "mlstack:namespaceBudgets.training.quota.gpus: 0 cannot hold one trial worker "
        "(workflow.trialResources, workflow.gpusPerWorker): 1 needed"
    )


def test_a_gang_scheduler_is_refused_because_nothing_installs_one(aws):
    aws["workflow"]["gangScheduler"] = "volcano"
    message = error_for(aws)
    assert message.startswith("mlstack:workflow.gangScheduler: no gang scheduler is installed"), message


# streaming.kafka: how the streaming services reach the listener the kafka role secures.
SASL_SSL = {"securityProtocol": "SASL_SSL", "credentialsSecret": "kafka-user", "caConfigMap": "kafka-ca"}


def test_the_streaming_services_speak_plaintext_unless_the_stack_says_otherwise(aws):
    assert parse(aws).streaming.kafka == config.settings.KafkaClient(security_protocol="PLAINTEXT")


def test_a_sasl_ssl_listener_is_read_with_its_secret_and_ca(aws):
    aws["streaming"] = {"kafka": {**SASL_SSL, "saslMechanism": "SCRAM-SHA-256"}}
    assert parse(aws).streaming.kafka == config.settings.KafkaClient(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        credentials_secret="kafka-user",
        ca_config_map="kafka-ca",
    )


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_the_secret_with_the_scram_users_credentials(aws, protocol):
    aws["streaming"] = {"kafka": {"securityProtocol": protocol, "caConfigMap": "kafka-ca"}}
    assert error_for(aws) == (
        f"mlstack:streaming.kafka.credentialsSecret: missing; securityProtocol {protocol} needs a Secret in "
        "mlstack-data with the keys username and password of a SCRAM user the brokers know (the kafka role's "
        "kafka_sasl_users); name it here"
    )


def test_tls_needs_the_configmap_with_the_brokers_ca(aws):
    aws["streaming"] = {"kafka": {"securityProtocol": "SSL"}}
    assert error_for(aws) == (
        "mlstack:streaming.kafka.caConfigMap: missing; securityProtocol SSL needs a ConfigMap in mlstack-data "
        "whose key ca.crt is the PEM of the CA that signed the brokers' certificates (kept in the kafka role's "
        "kafka_tls_truststore_path); name it here"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"securityProtocol": "SSL", "caConfigMap": "kafka-ca", "credentialsSecret": "kafka-user"},
         "mlstack:streaming.kafka.credentialsSecret: not used with securityProtocol SSL; remove it or change the "
         "protocol"),
        ({"credentialsSecret": "kafka-user"},
         "mlstack:streaming.kafka.credentialsSecret: not used with securityProtocol PLAINTEXT"),
        ({"securityProtocol": "SASL_PLAINTEXT", "credentialsSecret": "kafka-user", "caConfigMap": "kafka-ca"},
         "mlstack:streaming.kafka.caConfigMap: not used with securityProtocol SASL_PLAINTEXT"),
        ({"saslMechanism": "SCRAM-SHA-256"},
         "mlstack:streaming.kafka.saslMechanism: not used with securityProtocol PLAINTEXT"),
        ({"securityProtocol": "TLS"},
         "mlstack:streaming.kafka.securityProtocol: 'TLS' is not allowed; allowed values: PLAINTEXT, SSL, "
         "SASL_PLAINTEXT, SASL_SSL"),
        ({**SASL_SSL, "saslMechanism": "PLAIN"},
         "mlstack:streaming.kafka.saslMechanism: 'PLAIN' is not allowed; allowed values: SCRAM-SHA-512, "
         "SCRAM-SHA-256"),
        ({**SASL_SSL, "credentialsSecret": "Kafka_User"}, "mlstack:streaming.kafka.credentialsSecret: 'Kafka_User' "
         "must be a DNS label"),
        ({**SASL_SSL, "password": "x"}, "mlstack:streaming.kafka.password: unknown setting"),
    ],
    ids=["secret-without-sasl", "secret-on-plaintext", "ca-without-tls", "mechanism-without-sasl",
         "unknown-protocol", "not-scram", "bad-secret-name", "a-password-in-the-stack"],
)  # fmt: skip
def test_kafka_settings_that_cannot_apply_are_named(aws, settings, message):
    aws["streaming"] = {"kafka": settings}
    assert error_for(aws).startswith(message)


def test_the_sasl_mechanisms_are_the_kafka_roles_with_its_default_first():
    specs = yaml.safe_load((ROOT / "ansible/roles/kafka/meta/argument_specs.yml").read_text())
    role = specs["argument_specs"]["main"]["options"]["kafka_sasl_scram_mechanism"]
    assert config.settings.KafkaClient().sasl_mechanism == role["default"]
    assert set(kafka_services.SASL_MECHANISMS) == set(role["choices"])


def test_retraining_pytorch_trials_are_elastic_as_the_stack_file_says(aws):
    aws["workflow"]["retrain"].update(framework="pytorch", minWorkersPerTrial=1, maxRestarts=5)
    submission = parse(aws).workflow.retrain.submission
    assert (submission.min_workers_per_trial, submission.max_restarts) == (1, 5)


def test_the_spark_ingest_is_off_unless_the_stack_asks_and_sized_as_it_says(aws):
    del aws["workflow"]["spark"]
    assert parse(aws).workflow.spark is None
    aws["workflow"]["spark"] = {"executors": 3, "executorResources": {"cpu": "1", "memory": "3Gi"}}
    assert parse(aws).workflow.spark == config.SparkIngest(3, config.Resources(cpu="1", memory="3Gi"))


@pytest.mark.parametrize(
    ("spark", "message"),
    [
        (
            {"executorResources": {"cpu": "500m"}},
            "workflow.spark.executorResources: cpu '500m' must be whole cores",
        ),
        ({"executors": 0}, "workflow.spark.executors"),
        ({"executors": 2, "driver": {}}, "workflow.spark.driver"),
    ],
)
def test_the_spark_ingest_settings_are_checked(aws, spark, message):
    aws["workflow"]["spark"] = spark
    assert message in error_for(aws)


def test_the_spark_ingest_must_fit_the_training_quota(aws):
    aws["workflow"]["spark"] = {"executors": 20, "executorResources": {"cpu": "2", "memory": "4Gi"}}
    message = error_for(aws)
    assert message.startswith(
        "mlstack:namespaceBudgets.training.quota.cpu: 8 cannot hold the Spark ingest"
    ), message
