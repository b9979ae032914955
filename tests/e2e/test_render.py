"""What the end-to-end job deploys, checked here without a cluster: the render of tests/e2e/k3d-stack.yaml
(tests/e2e/render.py), MinIO's manifest against the stack's model source, and run.sh's pins against the stack.

The job itself (.github/workflows/e2e.yml) needs Docker and k3d, so it runs on GitHub only.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import urllib.parse
from typing import Any

import pytest
import yaml

from infra.components.kube import is_typed
from infra.specs import monitoring, namespaces, serving, versions
from tests.e2e import render
from tests.infra.program import Declared
from workloads import cli
from workloads.workflow import argo

HERE = pathlib.Path(__file__).parent
MANIFEST_FILES = (render.NAMESPACES_FILE, render.OBJECTS_FILE, render.CUSTOM_FILE)
PINNED_CHARTS = (versions.KUBE_PROMETHEUS_STACK, versions.KEDA, versions.ARGO_WORKFLOWS)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("e2e")
    render.render(directory)
    return directory


@pytest.fixture(scope="module")
def config():
    return render.stack_config(render.STACK_FILE)


def documents(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def rendered_objects(directory: pathlib.Path) -> list[dict[str, Any]]:
    return [obj for name in MANIFEST_FILES for obj in documents(directory / name)]


def releases(directory: pathlib.Path) -> list[list[str]]:
    return [line.split("\t") for line in (directory / render.RELEASES_FILE).read_text().splitlines()]


def facts(directory: pathlib.Path) -> dict[str, str]:
    pairs = (
        shlex.split(line)[0].split("=", 1) for line in (directory / render.ENV_FILE).read_text().splitlines()
    )
    return dict(pairs)


def test_every_file_is_written_and_every_object_parses(rendered: pathlib.Path):
    for name in (*MANIFEST_FILES, render.RELEASES_FILE, render.KUSTOMIZATIONS_FILE, render.ENV_FILE):
        assert (rendered / name).is_file(), name
    objects = rendered_objects(rendered)
    assert len(objects) > 30
    for obj in objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], obj


def test_files_follow_the_apply_order_namespaces_then_built_in_then_custom_kinds(rendered: pathlib.Path):
    assert {obj["kind"] for obj in documents(rendered / render.NAMESPACES_FILE)} == {"Namespace"}
    built_in = documents(rendered / render.OBJECTS_FILE)
    custom = documents(rendered / render.CUSTOM_FILE)
    assert built_in and all(is_typed(obj) and obj["kind"] != "Namespace" for obj in built_in)
    assert custom and not any(is_typed(obj) for obj in custom)


def test_every_namespace_the_objects_and_charts_use_is_rendered(rendered: pathlib.Path):
    created = {obj["metadata"]["name"] for obj in documents(rendered / render.NAMESPACES_FILE)}
    used = {
        obj["metadata"]["namespace"] for obj in rendered_objects(rendered) if "namespace" in obj["metadata"]
    }
    used |= {row[1] for row in releases(rendered)}
    assert used <= created, f"namespaces nothing creates: {used - created}"


def test_tf_serving_deployment_and_the_workflow_templates_are_rendered(rendered: pathlib.Path):
    objects = rendered_objects(rendered)
    deployments = {
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "Deployment"
    }
    assert (namespaces.SERVING, serving.NAME) in deployments
    templates = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] == "WorkflowTemplate"
    }
    assert templates == {
        (namespaces.TRAINING, argo.template_name(framework)) for framework in argo.FRAMEWORKS
    }


def test_every_image_comes_from_the_stack_registry_but_tf_serving(rendered: pathlib.Path, config):
    images = render.pod_images(rendered_objects(rendered))
    ours = {image for image in images if image.startswith(f"{config.images.registry}/")}
    assert images - ours == {config.serving.image}, "images from elsewhere than the stack's registry"
    assert {config.images.training(gpu=False), config.images.workloads()} <= ours


def test_helm_releases_pin_the_chart_versions_of_infra_specs_versions(rendered: pathlib.Path):
    rows = releases(rendered)
    pins = {chart.name: (chart.repository, chart.version) for chart in PINNED_CHARTS}
    assert {row[2]: (row[3], row[4]) for row in rows} == pins
    assert rows[0][0] == monitoring.RELEASE, (
        "the monitoring chart installs the CRDs the others' monitors need"
    )
    for row in rows:
        values = yaml.safe_load((rendered / row[6]).read_text())
        assert isinstance(values, dict) and values, row[6]


def test_the_training_operator_is_installed_from_its_pinned_manifests(rendered: pathlib.Path):
    assert (rendered / render.KUSTOMIZATIONS_FILE).read_text().split() == [
        versions.TRAINING_OPERATOR_MANIFESTS
    ]


def test_stack_env_names_the_images_k3s_and_where_the_s3_secret_is_read(rendered: pathlib.Path, config):
    env = facts(rendered)
    assert env["TRAINING_IMAGE"] == config.images.training(gpu=False)
    assert env["WORKLOADS_IMAGE"] == config.images.workloads()
    assert env["K3S_IMAGE"] == f"rancher/k3s:{config.kubernetes_version.replace('+', '-')}"
    assert env["NODE_CIDR"] == config.node_cidr
    # TF Serving's mirror, and the workflow's steps and trials, read and write the store in MinIO.
    assert set(env["S3_SECRET_NAMESPACES"].split()) == {namespaces.SERVING, namespaces.TRAINING}


def test_the_stack_registry_is_one_k3d_creates(config):
    host = config.images.registry.split("/")[0]
    assert re.fullmatch(r"k3d-[a-z0-9.-]+:\d+", host), f"run.sh creates k3d-NAME:PORT registries, not {host}"


def test_minio_serves_the_endpoint_bucket_and_secret_of_the_stack(rendered: pathlib.Path):
    env = facts(rendered)
    endpoint = urllib.parse.urlsplit(env["S3_ENDPOINT"])
    service_name, namespace = endpoint.hostname.split(".")[:2]
    objects = {(o["kind"], o["metadata"]["name"]): o for o in documents(HERE / "minio.yaml")}
    assert {o["metadata"]["namespace"] for o in objects.values()} == {namespace} == {env["S3_NAMESPACE"]}
    assert [p["port"] for p in objects["Service", service_name]["spec"]["ports"]] == [endpoint.port]
    job = objects["Job", "create-bucket"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"][-1].endswith(f"/{env['S3_BUCKET']}")
    secrets_read = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for o in objects.values()
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "valueFrom" in e
    }
    assert secrets_read == {env["S3_SECRET"]}


def run_sh_array(name: str) -> list[str]:
    """The items of the bash array ``name=(...)`` in run.sh."""
    found = re.search(rf"^{name}=\((.*)\)$", (HERE / "run.sh").read_text(), re.MULTILINE)
    assert found, f"run.sh defines {name}=(...)"
    return shlex.split(found[1])


def test_the_grid_run_sh_submits_is_one_the_workflow_command_accepts(tmp_path: pathlib.Path):
    output = tmp_path / "workflow.yaml"
    assert cli.main(["workflow", *run_sh_array("GRID"), "--output", str(output)]) == 0
    (point,) = json.loads(yaml.safe_load(output.read_text())["spec"]["arguments"]["parameters"][0]["value"])
    assert point["workers"] == "2"


def test_the_parameters_run_sh_sets_are_the_templates(rendered: pathlib.Path):
    names = {item.split("=", 1)[0] for item in run_sh_array("SYNTHETIC")}
    assert names <= set(argo.PARAMETERS)
    (template, *_) = (o for o in rendered_objects(rendered) if o["kind"] == "WorkflowTemplate")
    assert names <= {p["name"] for p in template["spec"]["arguments"]["parameters"]}


def test_kubectl_is_within_one_minor_of_the_stack_kubernetes(config):
    pinned = re.search(r"^KUBECTL_VERSION=v1\.(\d+)\.", (HERE / "run.sh").read_text(), re.MULTILINE)
    assert pinned, "run.sh pins KUBECTL_VERSION"
    stack_minor = int(config.kubernetes_minor.split(".")[1])
    assert abs(int(pinned[1]) - stack_minor) <= 1


def test_generated_secret_values_are_random_not_the_mocks_fixed_ones():
    declared = Declared(
        "kubernetes:core/v1:Secret",
        "grafana",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "g"},
            "stringData": {"password": "fixed"},
        },
        frozenset({"stringData"}),
    )
    first, second = render.deployable(declared), render.deployable(declared)
    assert set(first["stringData"]) == {"password"}
    assert first["stringData"]["password"] not in ("fixed", second["stringData"]["password"])


def test_secret_inputs_outside_a_secret_fail_the_render():
    declared = Declared(
        "kubernetes:core/v1:ConfigMap", "c", {"kind": "ConfigMap", "data": {"a": "b"}}, frozenset({"data"})
    )
    with pytest.raises(render.RenderError, match="outside a Secret"):
        render.deployable(declared)


def test_render_fails_naming_the_problem_for_a_stack_without_minio(tmp_path: pathlib.Path, capsys):
    stack = yaml.safe_load(render.STACK_FILE.read_text())
    stack["config"]["mlstack:serving"]["modelSource"] = {"kind": "pvc", "claimName": "models"}
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(yaml.safe_dump(stack))
    assert render.main([str(tmp_path / "out"), "--stack", str(stack_file)]) == 1
    assert "modelSource kind s3" in capsys.readouterr().err
