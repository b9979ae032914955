"""The job and service specs pass flags the workloads CLI accepts, and build the right topologies."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from infra import config
from infra.specs import data, serving, streaming, training
from tests.infra import schemas
from tests.infra.program import ROOT, ProgramRun
from workloads import cli
from workloads.core import settings as core_settings
from workloads.core.settings import CommandConfig
from workloads.serving import tfs_config
from workloads.streaming.infer_worker import MICRO_BATCH_SIZE, MICRO_BATCH_WAIT_MS
from workloads.training import TRAINERS, launcher
from workloads.training.config import TrainConfig

pytestmark = pytest.mark.xdist_group(name="infra-program")


def accepted(command: str, args: list[str]) -> argparse.Namespace:
    """Parses ``python -m workloads <command> <args>`` with the real parser; fails on any unknown flag."""
    parser = cli.build_parser()
    try:
        return parser.parse_args([command, *args])
    except SystemExit as exit_:
        pytest.fail(
            f"`python -m workloads {command}` rejects the flags the Pulumi program passes: {args} ({exit_})"
        )


def job(**overrides) -> config.TrainingJob:
    fields = {"name": "run-1", "framework": "tensorflow", "strategy": "multi-worker-mirrored", **overrides}
    return config.TrainingJob(**fields)


@pytest.mark.parametrize(
    "spec",
    [job(), job(strategy="parameter-server"), job(framework="pytorch", strategy="ddp", gpus_per_worker=1)],
    ids=["tensorflow-mwms", "tensorflow-parameter-server", "pytorch-ddp"],
)
def test_every_flag_of_the_training_job_exists_in_the_workloads_cli(spec):
    args = training.train_args(spec)
    parsed = accepted("train", args)
    assert parsed.framework == spec.framework and parsed.strategy == spec.strategy


@pytest.mark.parametrize("command", sorted(streaming.COMMANDS))
def test_every_flag_of_the_streaming_services_exists_in_the_workloads_cli(command):
    accepted(command, streaming.COMMANDS[command](config.Streaming()))


def resolved(command: str, args: list[str]) -> CommandConfig:
    """The command's config as ``python -m workloads`` builds it from ``args`` (converted and checked)."""
    flags = vars(accepted(command, args))
    common = {"command", "config", "log_format", "log_level"}
    given = {name: value for name, value in flags.items() if name not in common}
    return core_settings.resolve(cli.load_command(command).Config, given, {})


@pytest.mark.parametrize(
    ("settings", "micro_batch"),
    [
        (config.Streaming(), (MICRO_BATCH_SIZE, MICRO_BATCH_WAIT_MS)),
        (config.Streaming(micro_batch_size=64, micro_batch_wait_ms=20), (64, 20)),
    ],
    ids=["defaults", "set"],
)
def test_the_micro_batch_settings_reach_the_inference_workers_flags(settings, micro_batch):
    worker = resolved(streaming.INFER_WORKER, streaming.infer_worker_args(settings))
    assert (worker.max_batch_size, worker.max_batch_wait_ms) == micro_batch


@pytest.mark.parametrize(("framework", "strategy"), list(TRAINERS))
def test_every_trainer_the_workloads_register_has_a_job_layout(framework, strategy):
    built = training.training_job(
        job(framework=framework, strategy=strategy), config.Images("r.example/ml", "1")
    )
    assert built["kind"] == training.FRAMEWORKS[framework].kind
    assert set(built["spec"][training.FRAMEWORKS[framework].replica_specs]) == set(
        training.replicas(job(framework=framework, strategy=strategy))
    )


def test_the_declared_jobs_run_the_train_command_with_the_builders_flags(run: ProgramRun):
    for obj in run.objects_of_kind("TFJob") + run.objects_of_kind("PyTorchJob"):
        for replica in obj["spec"][
            training.FRAMEWORKS[("tensorflow" if obj["kind"] == "TFJob" else "pytorch")].replica_specs
        ].values():
            container = replica["template"]["spec"]["containers"][0]
            assert container["command"] == ["python", "-m", "workloads", "train"]
            assert container["args"][container["args"].index("--run-name") + 1] == obj["metadata"]["name"]


def test_training_defaults_read_and_write_the_clusters_hdfs_layout():
    args = training.train_args(job())
    value = dict(zip(args[::2], args[1::2], strict=True))
    assert (
        value["--data"]
        == "hdfs://hdfs-namenode.mlstack-data.svc.cluster.local:8020/mlstack/datasets/fashion-mnist/shards/"
    )
    assert value["--output"].startswith(f"{data.MODELS}/runs/run-1/")
    assert value["--metrics-port"] == "9410"


@pytest.mark.parametrize(
    ("spec", "layout"),
    [
        (job(workers=3), {"Worker": (3, True)}),
        (
            job(strategy="parameter-server", workers=2, parameter_servers=2),
            {"Chief": (1, False), "Worker": (2, True), "PS": (2, False)},
        ),
        (job(framework="pytorch", strategy="ddp", workers=4), {"Worker": (4, True)}),
        (job(framework="pytorch", strategy="ddp", workers=1), {"Worker": (1, True)}),
    ],
)
def test_each_strategy_gets_its_replica_layout(spec, layout):
    assert training.replicas(spec) == layout


def test_a_ddp_job_is_an_elastic_pytorchjob_whose_pods_run_torchrun_agents_over_the_trainer():
    spec = job(framework="pytorch", strategy="ddp", workers=3, min_workers=2, max_restarts=5)
    built = training.training_job(spec, config.Images("r.example/ml", "1"))
    schemas.validate_training_job(built, config.SUPPORTED_KUBERNETES_MINORS[-1])
    assert built["spec"]["elasticPolicy"] == {
        "minReplicas": 2,
        "maxReplicas": 3,
        "rdzvBackend": "c10d",
        "rdzvPort": training.FRAMEWORKS["pytorch"].port,
        "rdzvId": "run-1",
        "maxRestarts": 5,
    }
    assert built["spec"]["nprocPerNode"] == "1", "the operator's default, auto, is a worker per CPU"
    (replica,) = built["spec"]["pytorchReplicaSpecs"].values()
    container = replica["template"]["spec"]["containers"][0]
    assert container["command"] == launcher.agent_command(["python", "-m", "workloads", "train"])
    assert {e["name"]: e["value"] for e in container["env"]}.items() >= launcher.AGENT_ENVIRONMENT.items()
    fixed = training.training_job(
        job(framework="pytorch", strategy="ddp", workers=3), config.Images("r", "1")
    )
    assert (fixed["spec"]["elasticPolicy"]["minReplicas"], fixed["spec"]["elasticPolicy"]["maxRestarts"]) == (
        3,
        TrainConfig.max_restarts,
    )


@pytest.mark.parametrize("strategy", ["multi-worker-mirrored", "parameter-server"])
def test_tensorflow_jobs_stay_plain_workers_of_the_train_command(strategy):
    built = training.training_job(job(strategy=strategy), config.Images("r.example/ml", "1"))
    assert "elasticPolicy" not in built["spec"] and "nprocPerNode" not in built["spec"]
    for replica in built["spec"]["tfReplicaSpecs"].values():
        container = replica["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", "workloads", "train"]
        assert not {e["name"] for e in container["env"]} & set(launcher.AGENT_ENVIRONMENT)


@pytest.mark.parametrize("min_workers", [-1, 4])
def test_a_minimum_of_workers_outside_one_to_workers_is_refused_naming_the_setting(min_workers):
    spec = job(framework="pytorch", strategy="ddp", workers=3, min_workers=min_workers)
    with pytest.raises(ValueError, match=f"job run-1: min_workers is {min_workers}; give 1 to workers"):
        training.training_job(spec, config.Images("r.example/ml", "1"))


def test_gpu_replicas_use_the_cuda_image_and_cpu_replicas_do_not():
    images = config.Images(registry="r.example/ml", version="1.2.3")
    built = training.training_job(job(strategy="parameter-server", gpus_per_worker=2), images)
    specs = built["spec"]["tfReplicaSpecs"]
    worker = specs["Worker"]["template"]["spec"]
    assert worker["containers"][0]["image"] == "r.example/ml/mlstack-training:1.2.3-cuda"
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert worker["runtimeClassName"] == "nvidia"
    ps = specs["PS"]["template"]["spec"]
    assert ps["containers"][0]["image"] == "r.example/ml/mlstack-training:1.2.3"
    assert "runtimeClassName" not in ps


def test_digests_pin_images_when_configured():
    digest = "sha256:" + "ab" * 32
    images = config.Images("r.example/ml", "1", {"mlstack-training-cuda": digest})
    assert images.training(gpu=True) == f"r.example/ml/mlstack-training@{digest}"
    assert images.training(gpu=False) == "r.example/ml/mlstack-training:1"


def test_the_serving_config_files_parse_as_tf_serving_reads_them():
    source = config.ModelSource(kind="s3", base="s3://bucket/models", credentials_secret="s3")
    files = serving.config_files(
        config.Serving(model_source=source, versions=(3, 4), labels=(("stable", 3),))
    )
    (model,) = tfs_config.parse_model_config(files[serving.MODEL_FILE])
    assert model.base_path == "/models-mirror/fashion_mnist"  # the mirror sidecar's copy of the store
    assert model.versions == (3, 4) and model.labels == (("stable", 3),)
    assert tfs_config.parse_batching_parameters(files[serving.BATCHING_FILE]).num_batch_threads == 2
    assert tfs_config.parse_monitoring_config(files[serving.MONITORING_FILE]) == tfs_config.METRICS_PATH


def test_gpu_serving_uses_the_gpu_image_and_the_gpu_batching_profile():
    settings = config.Serving(
        model_source=config.ModelSource(kind="pvc", base="/models", claim_name="m"), gpu=True
    )
    assert serving.serving_image(settings) == "tensorflow/serving:2.21.0-gpu"
    batching = tfs_config.parse_batching_parameters(serving.config_files(settings)[serving.BATCHING_FILE])
    assert batching.max_batch_size == 512


def test_tf_serving_is_ready_only_once_its_model_answers_and_loads_its_configs(aws_run: ProgramRun):
    (deployment,) = [
        d for d in aws_run.objects_of_kind("Deployment") if d["metadata"]["name"] == "tf-serving"
    ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/fashion_mnist/metadata"
    args = container["args"]
    for flag in ("--model_config_file=", "--batching_parameters_file=", "--monitoring_config_file="):
        assert any(a.startswith(flag + serving.CONFIG_DIR) for a in args), flag
    assert "--enable_batching=true" in args and "--enable_model_warmup=true" in args
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounted[serving.CONFIG_DIR] == "config"
    assert "env" not in container  # the S3 credentials are the mirror sidecar's alone


def test_the_pvc_model_source_is_mounted_read_only(baremetal_run: ProgramRun):
    (deployment,) = [
        d for d in baremetal_run.objects_of_kind("Deployment") if d["metadata"]["name"] == "tf-serving"
    ]
    pod = deployment["spec"]["template"]["spec"]
    (claim,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": "fashion-mnist-models", "readOnly": True}
    config_map = next(
        c for c in baremetal_run.objects_of_kind("ConfigMap") if c["metadata"]["name"] == "tf-serving-config"
    )
    (model,) = tfs_config.parse_model_config(config_map["data"][serving.MODEL_FILE])
    assert model.base_path == "/models/fashion_mnist"


def scaling_trigger(run: ProgramRun) -> dict:
    (scaled,) = run.objects_of_kind("ScaledObject")
    assert not run.objects_of_kind("HorizontalPodAutoscaler"), (
        "KEDA owns the HPA; a second one would fight it"
    )
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"].startswith(
        "http://kube-prometheus-stack-prometheus.monitoring.svc"
    )
    return trigger


def test_keda_scales_serving_on_the_request_rate_per_replica(aws_run: ProgramRun):
    trigger = scaling_trigger(aws_run)
    assert trigger["metricType"] == "AverageValue"
    assert ":tensorflow:serving:request_count" in trigger["metadata"]["query"]
    assert trigger["metadata"]["threshold"] == "100"


def test_keda_scales_serving_on_p99_latency_in_milliseconds(baremetal_run: ProgramRun):
    trigger = scaling_trigger(baremetal_run)
    assert trigger["metricType"] == "Value"
    query = trigger["metadata"]["query"]
    assert "histogram_quantile(0.99" in query and ":tensorflow:serving:request_latency_bucket" in query
    assert query.endswith("/ 1000"), "TF Serving reports microseconds"
    assert trigger["metadata"]["threshold"] == "50"


def test_cpu_autoscaling_is_a_horizontal_pod_autoscaler():
    settings = config.Serving(
        model_source=config.ModelSource(kind="s3", base="s3://b"), min_replicas=2, max_replicas=5
    )
    scaler = serving.autoscaler(settings)
    assert scaler["kind"] == "HorizontalPodAutoscaler"
    assert (scaler["spec"]["minReplicas"], scaler["spec"]["maxReplicas"]) == (2, 5)


def test_spec_modules_are_pure_and_import_neither_pulumi_nor_ml_frameworks():
    code = (
        "import sys, infra.specs.serving, infra.specs.training, infra.specs.gpu, infra.specs.monitoring, "
        "infra.specs.inventory, infra.specs.network, infra.specs.streaming, infra.specs.cloud_init, "
        "infra.specs.argo, infra.specs.workflow, infra.specs.pipeline, infra.config\n"
        "bad = [m for m in ('pulumi', 'tensorflow', 'torch') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_tf_serving_is_the_release_of_the_tensorflow_that_exports_the_models():
    """TF Serving loads what a TensorFlow of its own version or older wrote; the pin follows the exporter."""
    import importlib.metadata

    assert config.Serving().image.rsplit(":", 1)[1] == importlib.metadata.version("tensorflow")


# The streaming services on a secured Kafka listener (streaming.kafka): Secret and CA mounted as files, only
# their paths in the args. tests/system/test_kafka_security.py runs what these render against a real broker.
SECURED = config.Streaming(
    kafka=config.settings.KafkaClient(
        security_protocol="SASL_SSL", credentials_secret="kafka-user", ca_config_map="kafka-ca"
    )
)


def streaming_pods(settings: config.Streaming) -> dict[str, dict]:
    """Pod spec of each streaming Deployment, by name, validated against the Kubernetes schema."""
    from tests.infra.schemas import validate_core

    pods = {}
    for obj in streaming.objects(settings, config.Images("r.example/ml", "1"), "10.0.0.0/16"):
        if obj["kind"] == "Deployment":
            validate_core(obj, config.SUPPORTED_KUBERNETES_MINORS[-1])
            pods[obj["metadata"]["name"]] = obj["spec"]["template"]["spec"]
    assert set(pods) == set(streaming.COMMANDS)
    return pods


@pytest.mark.parametrize("name", sorted(streaming.COMMANDS))
def test_a_secured_listeners_secret_and_ca_are_mounted_read_only_as_files(name):
    pod = streaming_pods(SECURED)[name]
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes[streaming.KAFKA_CREDENTIALS_VOLUME]["secret"]
    assert secret == {
        "secretName": "kafka-user",
        "items": [{"key": "username", "path": "username"}, {"key": "password", "path": "password"}],
        "defaultMode": 0o440,  # the pod's group (fsGroup) reads it, nobody else
    }
    assert pod["securityContext"]["fsGroup"] == pod["containers"][0]["securityContext"]["runAsUser"]
    ca = volumes[streaming.KAFKA_CA_VOLUME]["configMap"]
    assert (ca["name"], ca["items"]) == ("kafka-ca", [{"key": "ca.crt", "path": "ca.crt"}])
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    for path, volume in (
        (streaming.KAFKA_CREDENTIALS_DIR, streaming.KAFKA_CREDENTIALS_VOLUME),
        (streaming.KAFKA_CA_DIR, streaming.KAFKA_CA_VOLUME),
    ):
        assert mounts[path] == {"name": volume, "mountPath": path, "readOnly": True}


@pytest.mark.parametrize("name", sorted(streaming.COMMANDS))
def test_a_secured_listener_reaches_the_services_as_flags_naming_the_mounted_files(name):
    container = streaming_pods(SECURED)[name]["containers"][0]
    service = resolved(name, container["args"])
    assert (
        service.kafka_security_protocol,
        service.kafka_sasl_mechanism,
        service.kafka_credentials_dir,
        service.kafka_ca_file,
    ) == ("SASL_SSL", "SCRAM-SHA-512", "/var/run/secrets/mlstack/kafka", "/etc/mlstack/kafka-ca/ca.crt")
    assert service.kafka_config == ()
    # No secret in args or environment: the services read files only, and nothing comes from a Secret's keys.
    assert not any("sasl." in arg or "password" in arg.lower() for arg in container["args"])
    assert all(set(item) == {"name", "value"} for item in container["env"]), container["env"]
    assert not any("KAFKA" in item["name"] or "SASL" in item["name"] for item in container["env"])


@pytest.mark.parametrize("name", sorted(streaming.COMMANDS))
def test_a_plaintext_listener_mounts_nothing_for_kafka(name):
    pod = streaming_pods(config.Streaming())[name]
    assert not {streaming.KAFKA_CREDENTIALS_VOLUME, streaming.KAFKA_CA_VOLUME} & {
        v["name"] for v in pod["volumes"]
    }
    args = pod["containers"][0]["args"]
    assert args[args.index("--kafka-security-protocol") + 1] == "PLAINTEXT"
    assert not {"--kafka-credentials-dir", "--kafka-ca-file", "--kafka-sasl-mechanism"} & set(args)


def test_the_services_bootstrap_port_is_the_kafka_roles_broker_listener_port():
    """The role's listener (server.properties) and its firewalld service use one port; the services dial it."""
    import yaml

    from infra.specs import ports

    role = yaml.safe_load((ROOT / "ansible/roles/kafka/vars/main.yml").read_text())
    assert role["_kafka_broker_port"] == ports.KAFKA_BROKER
    assert role["_kafka_firewalld_broker_service"]["ports"] == [f"{ports.KAFKA_BROKER}/tcp"]
    for command, args in streaming.COMMANDS.items():
        rendered = args(SECURED)
        servers = rendered[rendered.index("--bootstrap-servers") + 1]
        assert servers.rsplit(":", 1)[1] == str(role["_kafka_broker_port"]), command


def test_stream_ingest_is_replaced_not_rolled_so_its_output_never_has_two_writers():
    """Its manifest is its commit log (streaming.ingestReplicas must be 1); a rolling update would run the
    new pod beside the old one for a while."""
    deployments = {
        obj["metadata"]["name"]: obj
        for obj in streaming.objects(config.Streaming(), config.Images("r.example/ml", "1"), "10.0.0.0/16")
        if obj["kind"] == "Deployment"
    }
    assert deployments[streaming.STREAM_INGEST]["spec"]["strategy"] == {"type": "Recreate"}
    assert deployments[streaming.INFER_WORKER]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
