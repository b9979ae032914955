"""Renders what the Pulumi program declares for a stack file as files that the end-to-end job deploys
with kubectl and helm (tests/e2e/run.sh), in the order the program's dependencies give:

- ``00-namespaces.yaml``: the Namespaces;
- ``10-objects.yaml``: every object of a built-in kind (NetworkPolicies, Secrets, Deployments, RBAC ...);
- ``releases.tsv`` and ``releases/<release>.values.yaml``: the Helm releases, the monitoring chart first
  (the program makes the others' ServiceMonitors wait for its CRDs), each with its chart, repository,
  version, timeout and the exact values the program passes;
- ``kustomizations.txt``: the kustomize sources (the training operator's pinned manifests);
- ``20-custom.yaml``: objects of custom kinds (ServiceMonitors, PrometheusRules, the ScaledObject, the
  WorkflowTemplates), applied once the charts and the operator have installed their CRDs;
- ``stack.env``: what the driver needs to know of the stack, as shell assignments (image references, the
  k3s image, the node network, namespaces, ports, the model store and its credentials Secret).

The program runs under the test suite's mocks (``tests.infra.program``). Secret values the program
generates (the Grafana admin password) come out of the mocks as fixed strings: they are written as fresh
random values instead.

Usage: python -m tests.e2e.render OUTPUT_DIR [--stack tests/e2e/k3d-stack.yaml]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import pathlib
import secrets
import shlex
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from infra.components.kube import is_typed
from infra.config import NAMESPACE, StackConfig, parse
from infra.specs import monitoring, namespaces, ports, serving
from tests.infra.pods import containers, pod_templates
from tests.infra.program import Declared, ProgramRun, run_program, stack_settings
from workloads.serving import tfs_config

STACK_FILE = pathlib.Path(__file__).with_name("k3d-stack.yaml")
NAMESPACES_FILE = "00-namespaces.yaml"
OBJECTS_FILE = "10-objects.yaml"
CUSTOM_FILE = "20-custom.yaml"
RELEASES_FILE = "releases.tsv"
RELEASES_DIR = "releases"
KUSTOMIZATIONS_FILE = "kustomizations.txt"
ENV_FILE = "stack.env"
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
KUSTOMIZATION_TYPE = "kubernetes:kustomize/v2:Directory"
_FIRST_KEYS = ("apiVersion", "kind", "metadata")


class RenderError(RuntimeError):
    """The program failed for the stack, or declared something this renderer cannot deploy."""


@dataclasses.dataclass(frozen=True)
class Release:
    """A Helm release as the program declares it."""

    name: str
    namespace: str
    chart: str
    repository: str
    version: str
    timeout_s: int
    values: dict[str, Any]

    @classmethod
    def of(cls, declared: Declared) -> Release:
        inputs = declared.inputs
        repository = inputs.get("repositoryOpts", {}).get("repo", "")
        if not repository:
            raise RenderError(
                f"{declared.name}: a chart from a local archive ({inputs['chart']}); give a repository"
            )
        return cls(
            name=inputs["name"],
            namespace=inputs["namespace"],
            chart=inputs["chart"],
            repository=repository,
            version=inputs["version"],
            timeout_s=int(inputs.get("timeout", 300)),
            values=inputs.get("values", {}),
        )

    def values_file(self) -> str:
        return f"{RELEASES_DIR}/{self.name}.values.yaml"

    def row(self) -> str:
        fields = (self.name, self.namespace, self.chart, self.repository, self.version, str(self.timeout_s))
        return "\t".join((*fields, self.values_file()))


@dataclasses.dataclass(frozen=True)
class Rendering:
    """What the program declared, sorted into what the job applies and installs in turn."""

    namespaces: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    custom: list[dict[str, Any]]
    releases: list[Release]
    kustomizations: list[str]


def stack_config(path: pathlib.Path) -> StackConfig:
    """The stack file's configuration, validated as the program validates it."""
    prefix = f"{NAMESPACE}:"
    return parse({k.removeprefix(prefix): v for k, v in stack_settings(path).items() if k.startswith(prefix)})


def declarations(path: pathlib.Path) -> ProgramRun:
    run, error, _ = run_program(path)
    if error is not None:
        raise RenderError(f"the program failed for {path}: {error}") from error
    assert run is not None
    return run


def sort_declarations(run: ProgramRun) -> Rendering:
    rendering = Rendering([], [], [], [], [])
    for declared in run.resources:
        if declared.is_kubernetes_object:
            obj = deployable(declared)
            if obj["kind"] == "Namespace":
                rendering.namespaces.append(obj)
            else:
                (rendering.objects if is_typed(obj) else rendering.custom).append(obj)
        elif declared.type == RELEASE_TYPE:
            rendering.releases.append(Release.of(declared))
        elif declared.type == KUSTOMIZATION_TYPE:
            rendering.kustomizations.append(declared.inputs["directory"])
        elif declared.type.startswith("kubernetes:"):
            raise RenderError(f"{declared.name}: no way to deploy a {declared.type} here")
    # The mocks record resources as their inputs resolve, not in dependency order.
    rendering.releases.sort(key=lambda release: release.name != monitoring.RELEASE)
    return rendering


def deployable(declared: Declared) -> dict[str, Any]:
    """The object with its well-known keys first and its secret inputs given fresh random values."""
    obj = dict(declared.inputs)
    if declared.secret_inputs and obj["kind"] != "Secret":
        raise RenderError(f"{declared.name}: secret inputs {sorted(declared.secret_inputs)} outside a Secret")
    for key in declared.secret_inputs:
        obj[key] = {name: _random_value(encode=key == "data") for name in obj[key]}
    return {**{key: obj[key] for key in _FIRST_KEYS if key in obj}, **obj}


def _random_value(encode: bool) -> str:
    value = secrets.token_hex(24)
    return base64.b64encode(value.encode()).decode() if encode else value


def pod_images(objects: Iterable[dict[str, Any]]) -> set[str]:
    """Every container image of every pod the objects make (workflow steps and trials included)."""
    return {c["image"] for _, _, template in pod_templates(list(objects)) for c in containers(template)}


def secret_namespaces(objects: Iterable[dict[str, Any]], secret: str) -> set[str]:
    """The namespaces of the pods that read the Secret ``secret`` (as variables or as a volume)."""
    found = set()
    for _, owner, template in pod_templates(list(objects)):
        if secret in _secrets_read(template):
            found.add(owner["metadata"]["namespace"])
    return found


def _secrets_read(template: dict[str, Any]) -> set[str]:
    names = {v["secret"]["secretName"] for v in template["spec"].get("volumes", []) if "secret" in v}
    for container in containers(template):
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    return names


def stack_facts(config: StackConfig, rendering: Rendering) -> dict[str, str]:
    """What run.sh reads from ``stack.env``."""
    source = config.serving.model_source
    if source.kind != "s3" or not source.s3_endpoint or not source.credentials_secret:
        raise RenderError(
            "the end-to-end stack keeps models in MinIO: serving.modelSource kind s3, with an endpoint and Secret"
        )
    objects = [*rendering.objects, *rendering.custom]
    return {
        "K3S_IMAGE": f"rancher/k3s:{config.kubernetes_version.replace('+', '-')}",
        "NODE_CIDR": config.node_cidr,
        "IMAGE_REGISTRY": config.images.registry,
        "TRAINING_IMAGE": config.images.training(gpu=False),
        "WORKLOADS_IMAGE": config.images.workloads(),
        "TRAINING_NAMESPACE": namespaces.TRAINING,
        "SERVING_NAMESPACE": namespaces.SERVING,
        "TF_SERVING": serving.NAME,
        "TFS_REST_PORT": str(ports.TFS_REST),
        "MODEL_NAME": tfs_config.MODEL_NAME,
        "MODEL_STORE": source.base,
        "S3_BUCKET": urllib.parse.urlsplit(source.base).netloc,
        "S3_ENDPOINT": source.s3_endpoint,
        "S3_NAMESPACE": service_namespace(source.s3_endpoint),
        "S3_SECRET": source.credentials_secret,
        "S3_SECRET_NAMESPACES": " ".join(sorted(secret_namespaces(objects, source.credentials_secret))),
    }


def service_namespace(url: str) -> str:
    """The namespace of the in-cluster Service a URL names (``http://<service>.<namespace>.svc...``): where
    run.sh creates MinIO (tests/e2e/minio.yaml)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) < 3 or parts[2] != "svc":
        raise RenderError(
            f"{url}: not an in-cluster Service (http://<service>.<namespace>.svc.cluster.local:<port>)"
        )
    return parts[1]


def _dump_all(objects: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def write(rendering: Rendering, facts: dict[str, str], directory: pathlib.Path) -> list[pathlib.Path]:
    """Writes the files into ``directory`` (created); returns their paths."""
    (directory / RELEASES_DIR).mkdir(parents=True, exist_ok=True)
    texts = {
        NAMESPACES_FILE: _dump_all(rendering.namespaces),
        OBJECTS_FILE: _dump_all(rendering.objects),
        CUSTOM_FILE: _dump_all(rendering.custom),
        RELEASES_FILE: "".join(f"{release.row()}\n" for release in rendering.releases),
        KUSTOMIZATIONS_FILE: "".join(f"{source}\n" for source in rendering.kustomizations),
        ENV_FILE: "".join(f"{key}={shlex.quote(value)}\n" for key, value in facts.items()),
    }
    for release in rendering.releases:
        texts[release.values_file()] = yaml.safe_dump(release.values, sort_keys=True)
    paths = []
    for name, text in texts.items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


def render(directory: pathlib.Path, stack_file: pathlib.Path = STACK_FILE) -> list[pathlib.Path]:
    """Runs the program for ``stack_file`` and writes what it declares into ``directory``."""
    config = stack_config(stack_file)
    rendering = sort_declarations(declarations(stack_file))
    return write(rendering, stack_facts(config, rendering), directory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=pathlib.Path, help="directory to write the files into")
    parser.add_argument(
        "--stack", type=pathlib.Path, default=STACK_FILE, help="stack file (Pulumi.<stack>.yaml format)"
    )
    args = parser.parse_args(argv)
    try:
        paths = render(args.output, args.stack)
    except (RenderError, ValueError) as error:
        print(f"render: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
