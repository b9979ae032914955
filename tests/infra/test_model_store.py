"""The model store as each consumer reaches it: promotion (the workflow's steps and trials) writes where
TF Serving's mirror reads, TF Serving's config names the directory the mirror fills (or the claim), the S3
Secret reaches exactly the containers that touch the store, the network opens exactly the store's ports,
and a first deploy waits on nothing that needs a model."""

from __future__ import annotations

import re
from typing import Any

import pytest

from infra.config import Images, ModelSource, Serving, Streaming
from infra.specs import model_store, namespaces, ports
from infra.specs import serving as serving_specs
from infra.specs import streaming as streaming_specs
from infra.specs import workflow as workflow_specs
from tests.infra import workflows
from tests.infra.conftest import program_run
from tests.infra.pods import containers, pod_templates
from tests.infra.program import ProgramRun, run_program, stack_settings
from workloads.core.storage import S3_CREDENTIALS_DIR_ENV, S3_ENDPOINT_ENV
from workloads.serving import tfs_config

pytestmark = pytest.mark.xdist_group(name="infra-program")
IMAGES = Images("registry.example/mlstack", "1.0")
NODE_CIDR = "10.0.0.0/16"


@pytest.fixture(scope="module")
def hdfs_run(ansible_project) -> ProgramRun:
    """The baremetal example with its models on the cluster's HDFS instead of a PVC."""
    serving = {**stack_settings("baremetal-example")["mlstack:serving"], "modelSource": {"kind": "hdfs"}}
    run, error, _ = run_program(
        "baremetal-example", {"mlstack:ansibleDir": str(ansible_project), "mlstack:serving": serving}
    )
    assert error is None, error
    return run


def tf_serving(run: ProgramRun) -> dict[str, Any]:
    (deployment,) = [
        d for d in run.objects_of_kind("Deployment") if d["metadata"]["name"] == serving_specs.NAME
    ]
    return deployment


def served_base_path(run: ProgramRun) -> str:
    (config_map,) = [
        c for c in run.objects_of_kind("ConfigMap") if c["metadata"]["name"] == "tf-serving-config"
    ]
    (model,) = tfs_config.parse_model_config(config_map["data"][serving_specs.MODEL_FILE])
    return model.base_path


def template_default(run: ProgramRun, name: str) -> str:
    template = next(t for t in run.objects_of_kind("WorkflowTemplate"))
    (parameter,) = [p for p in template["spec"]["arguments"]["parameters"] if p["name"] == name]
    return parameter["value"]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


@pytest.mark.parametrize("which", ["aws-example", "hdfs"])
def test_the_mirror_copies_the_store_promotion_writes_into_the_directory_tf_serving_reads(
    which, ansible_project, hdfs_run
):
    run = hdfs_run if which == "hdfs" else program_run(which, ansible_project)
    pod = tf_serving(run)["spec"]["template"]["spec"]
    (mirror,) = pod["initContainers"]
    (server,) = pod["containers"]
    args = mirror["args"]
    assert mirror["command"] == ["python", "-m", "workloads", "mirror-models"]
    assert flag(args, "--model-store") == template_default(run, "model-store")
    assert served_base_path(run) == f"{flag(args, '--target')}/{flag(args, '--model-name')}"
    target = flag(args, "--target")
    assert mounts(mirror)[target]["name"] == mounts(server)[target]["name"] == model_store.MIRROR_VOLUME
    assert mounts(server)[target]["readOnly"] and not mounts(mirror)[target].get("readOnly", False)


def test_a_claim_is_served_read_only_and_written_read_write_by_the_promoting_step(baremetal_run):
    pod = tf_serving(baremetal_run)["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    store = template_default(baremetal_run, "model-store")
    (server,) = pod["containers"]
    assert served_base_path(baremetal_run) == f"{store}/{tfs_config.MODEL_NAME}"
    assert mounts(server)[store] == {"name": model_store.STORE_VOLUME, "mountPath": store, "readOnly": True}
    claim = {v["name"]: v for v in pod["volumes"]}[model_store.STORE_VOLUME]["persistentVolumeClaim"]
    for template in baremetal_run.objects_of_kind("WorkflowTemplate"):
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes[model_store.STORE_VOLUME]["persistentVolumeClaim"] == {**claim, "readOnly": False}
        (select,) = [s for name, s in workflows.step_pods(template) if name == "select"]
        (container,) = containers(select)
        assert mounts(container)[store]["readOnly"] is False


def test_a_first_deploy_waits_on_no_model(run):
    deployment = tf_serving(run)
    assert deployment["metadata"]["annotations"][serving_specs.SKIP_AWAIT] == "true"
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    # Only readiness needs a model: the startup and liveness probes are the server's port, so a pod with no
    # version yet is never restarted.
    assert server["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{tfs_config.MODEL_NAME}/metadata"
    for probe in ("startupProbe", "livenessProbe"):
        assert server[probe]["tcpSocket"] == {"port": "grpc"}, probe
    for mirror in pod.get("initContainers", []):
        assert (
            mirror["restartPolicy"] == "Always"
        )  # a native sidecar: TF Serving starts after its startup probe
        assert mirror["startupProbe"]["exec"]["command"] == ["cat", flag(mirror["args"], "--ready-file")]
        assert "readinessProbe" not in mirror and "livenessProbe" not in mirror


def test_the_s3_secret_reaches_the_mirror_every_step_and_every_trial_as_files_and_nothing_else(aws_run):
    secret = stack_settings("aws-example")["mlstack:serving"]["modelSource"]["credentialsSecret"]
    reading = []
    for where, _, template in pod_templates(aws_run.kubernetes_objects()):
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for container in containers(template):
            secret_env = [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
            assert not secret_env, f"{where}: a secret in env"
            mounted = [
                m
                for m in container.get("volumeMounts", [])
                if volumes.get(m["name"], {}).get("secret", {}).get("secretName") == secret
            ]
            if not mounted:
                continue
            (mount,) = mounted
            assert volumes[mount["name"]]["secret"] == {"secretName": secret, "defaultMode": 0o440}, where
            assert mount["readOnly"], where
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env[S3_CREDENTIALS_DIR_ENV] == mount["mountPath"], where
            reading.append(f"{where} {container['name']}")
    steps = [f"WorkflowTemplate {namespaces.TRAINING}/train-select-serve-{framework} step {step} main"
             for framework in ("tensorflow", "pytorch")
             for step in ("ingest", "select", "verify-serving", "record-outcome")]  # fmt: skip
    trials = [
        f"TFJob {namespaces.TRAINING}/trial-tfjob Worker tensorflow",
        f"PyTorchJob {namespaces.TRAINING}/trial-pytorchjob Worker pytorch",  # elastic: Workers only
    ]
    mirror = f"Deployment {namespaces.SERVING}/{serving_specs.NAME} {serving_specs.MIRROR}"
    tracker = f"Deployment {namespaces.TRACKING}/mlflow credentials"  # writes boto3's file for the server
    assert sorted(reading) == sorted([mirror, tracker, *steps, *trials])


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        (ModelSource(kind="hdfs", base=""), {(NODE_CIDR, ports.HDFS_NAMENODE_RPC), (NODE_CIDR, ports.HDFS_DATANODE_DATA)}),
        (ModelSource(kind="s3", base="s3://b/m", credentials_secret="s"), {("0.0.0.0/0", ports.HTTPS)}),
        (ModelSource(kind="s3", base="s3://b/m", s3_endpoint="http://minio:9000", credentials_secret="s"), {("0.0.0.0/0", 9000)}),
        (ModelSource(kind="s3", base="s3://b/m", s3_endpoint="http://minio", credentials_secret="s"), {("0.0.0.0/0", ports.HTTP)}),
        (ModelSource(kind="s3", base="s3://b/m", s3_endpoint="https://s3.example", credentials_secret="s"), {("0.0.0.0/0", ports.HTTPS)}),
        (ModelSource(kind="pvc", base="/models", claim_name="m"), set()),
    ],
)  # fmt: skip
def test_the_serving_pods_reach_exactly_the_store(source, allowed):
    objects = serving_specs.objects(Serving(model_source=source), IMAGES, NODE_CIDR)
    opened = {
        (peer["ipBlock"]["cidr"], port["port"])
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == model_store.POLICY
        for rule in o["spec"]["egress"]
        for peer in rule["to"]
        for port in rule["ports"]
    }
    assert opened == allowed


def test_an_s3_endpoint_is_what_every_container_that_touches_the_store_is_given():
    source = ModelSource(
        kind="s3", base="s3://b/m", s3_endpoint="http://minio:9000", s3_region="eu-1", credentials_secret="s"
    )
    env = {e["name"]: e.get("value") for e in model_store.env(source)}
    assert env[S3_ENDPOINT_ENV] == "http://minio:9000" and env["AWS_REGION"] == "eu-1"
    defaults = workflow_specs.WorkflowDefaults(model_source=source)
    template = workflow_specs.workflow_template("tensorflow", IMAGES, defaults)
    for where, pod in [*workflows.step_pods(template), *workflows.trial_jobs(template)]:
        assert "'value': 'http://minio:9000'" in str(pod), where
    (policy,) = model_store.object_storage_policies(source, namespaces.TRAINING)
    assert policy["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert re.fullmatch(r"allow-[a-z-]+", policy["metadata"]["name"])


@pytest.mark.parametrize(
    ("output", "opened"),
    [
        ("", {ports.KAFKA_BROKER, ports.HDFS_NAMENODE_RPC, ports.HDFS_DATANODE_DATA}),
        ("webhdfs://nn:9870/mlstack/stream/", {ports.KAFKA_BROKER, ports.HDFS_NAMENODE_HTTP, ports.HDFS_DATANODE_HTTP}),
    ],
)  # fmt: skip
def test_stream_ingest_reaches_hdfs_on_the_ports_its_outputs_scheme_uses(output, opened):
    objects = streaming_specs.objects(Streaming(ingest_output=output), IMAGES, NODE_CIDR)
    (policy,) = [o for o in objects if o["metadata"]["name"] == "allow-kafka-and-hdfs"]
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == opened
