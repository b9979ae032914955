"""The workflow's Spark ingest as the cluster runs it, against a real API server: the ingest step's own
command and `--spark-conf` (as the baremetal stack renders them) start a real Spark driver on Kubernetes,
as the step's service account; Spark asks the API server for executor pods from the stack's executor
template, and the server admits them (Pod Security `restricted`, the quota, the priority class). No kubelet
runs here, so a double of it (:class:`ExecutorKubelet`) starts each admitted executor pod's command with
the pod's environment as a local process, marks the pod Running, and stops the process when Spark deletes
the pod. The dataset must hold the records the one-process ingest writes.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from infra.specs import spark
from infra.specs.namespaces import TRAINING
from tests.infra import workflows
from tests.infra.conftest import program_run
from tests.infra.test_api_server import apply_order, custom_kinds, default_service_account
from tests.support.control_plane import ControlPlane, install_crds
from tests.support.kube_client import Client
from tests.workloads.support import ROOT, records, subprocess_env, write_idx
from workloads.data import datasets, spark_executor

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install -e '.[spark]')")
pytestmark = [pytest.mark.xdist_group("api-server"), pytest.mark.slow]

STACK = "baremetal-example"
DRIVER_POD = "ingest-driver"
LOOPBACK = "127.0.0.1"
EXECUTORS = f"{spark.ROLE_LABEL}=executor"


class ExecutorKubelet:
    """A double of the kubelet for Spark's executor pods (none can run here): each new pod's container
    command runs as a local process with the pod's environment (its own name, 127.0.0.1 as its address);
    the pod is marked Running; a deleted pod's process is stopped."""

    def __init__(self, api: Client, workdir: pathlib.Path) -> None:
        self.api, self.workdir = api, workdir
        self.processes: dict[str, subprocess.Popen] = {}
        self.pods: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ExecutorKubelet:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        for process in self.processes.values():
            process.kill()
            process.wait()

    def listed(self) -> list[dict[str, Any]]:
        path = f"{self.api.url}/api/v1/namespaces/{TRAINING}/pods"
        response = self.api.session.get(path, params={"labelSelector": EXECUTORS}, timeout=10)
        response.raise_for_status()
        return response.json()["items"]

    def _run(self) -> None:
        while not self.stopping.is_set():
            listed = {pod["metadata"]["name"]: pod for pod in self.listed()}
            for name, pod in listed.items():
                if name not in self.processes:
                    self.pods.append(pod)
                    self.processes[name] = self._start(pod)
            for name, process in self.processes.items():
                if name not in listed and process.poll() is None:
                    process.terminate()  # Spark deleted the pod
            time.sleep(0.3)

    def _start(self, pod: dict[str, Any]) -> subprocess.Popen:
        name = pod["metadata"]["name"]
        (container,) = pod["spec"]["containers"]
        argv = [*container["command"], *container.get("args", [])]
        assert argv[0] == "python", f"{name}: {argv}"
        local = self.workdir / name
        local.mkdir(parents=True)
        env = {**subprocess_env(), **{e["name"]: self._value(pod, e) for e in container.get("env", [])}}
        env.update(HOME=str(local), SPARK_LOCAL_DIRS=str(local), PYSPARK_PYTHON=sys.executable)
        env.pop("MLSTACK_CACHE_DIR", None)
        running(self.api, name)
        with (self.workdir / f"{name}.log").open("w") as log:
            return subprocess.Popen(
                [sys.executable, *argv[1:]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    @staticmethod
    def _value(pod: dict[str, Any], item: dict[str, Any]) -> str:
        if "value" in item:
            return item["value"]
        field = item["valueFrom"]["fieldRef"]["fieldPath"]
        known = {
            "status.podIP": LOOPBACK,
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": pod["metadata"]["namespace"],
        }
        assert field in known, f"env {item['name']}: the kubelet double does not know {field}"
        return known[field]


def running(api: Client, name: str) -> None:
    """What a kubelet reports of a started pod: Running and ready, at its address (here: loopback)."""
    ready = [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]
    status = {"phase": "Running", "podIP": LOOPBACK, "podIPs": [{"ip": LOOPBACK}], "conditions": ready}
    response = api.session.patch(
        f"{api.url}/api/v1/namespaces/{TRAINING}/pods/{name}/status",
        data=json.dumps({"status": status}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    )
    response.raise_for_status()


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane, ansible_project: pathlib.Path) -> Iterator[tuple[Client, list]]:
    """The stack's objects applied (and removed afterwards, but the namespaces)."""
    objects = sorted(program_run(STACK, ansible_project).kubernetes_objects(), key=apply_order)
    with control_plane.session() as session:
        api = Client(control_plane.url, session)
        install_crds(api, custom_kinds(ansible_project))
        applied = []
        for obj in objects:
            if api.resource(obj) is None:
                continue
            verdict = api.apply(obj)
            assert verdict.accepted, f"{obj['kind']} {obj['metadata']['name']}: {verdict}"
            applied.append(obj)
            if obj["kind"] == "Namespace":
                default_service_account(api, obj["metadata"]["name"])
        yield api, objects
        for obj in reversed(applied):
            if obj["kind"] != "Namespace":
                api.delete(obj)


def ingest_step(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ingest step's pod template and main container, as Argo runs it."""
    template = next(o for o in objects if o["kind"] == "WorkflowTemplate")
    pod = dict(workflows.step_pods(template))["ingest"]
    return pod, pod["spec"]["containers"][0]


def driver_token(api: Client) -> str:
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    path = f"/api/v1/namespaces/{TRAINING}/serviceaccounts/{spark.DRIVER_ACCOUNT}/token"
    return api.post(path, request)["status"]["token"]


def driver_argv(container: dict[str, Any], control_plane: ControlPlane, files: pathlib.Path, raw, out):
    """The step's ingest command with the rendered Spark flags, run from here: the test API server for the
    in-cluster one, the step's name and address filled in as the kubelet would, the executor template where
    the ConfigMap would be mounted, and the token Kubernetes would mount."""
    args = container["args"]
    flags = args[args.index("--engine") :]  # --engine spark --spark-master URL --spark-conf KEY=VALUE...
    assert flags[:5] == ["--engine", "spark", "--spark-master", spark.MASTER, "--spark-conf"], flags
    conf = dict(pair.split("=", 1) for pair in flags[5:])
    filled = {spark.POD_NAME_VARIABLE: DRIVER_POD, spark.POD_IP_VARIABLE: LOOPBACK}
    for key in conf:
        for name, known in filled.items():
            conf[key] = conf[key].replace(f"$({name})", known)
    conf.update({
        "spark.kubernetes.executor.podTemplateFile": str(files / spark.TEMPLATE_FILE),
        "spark.kubernetes.authenticate.caCertFile": str(control_plane.ca),
        "spark.kubernetes.authenticate.oauthTokenFile": str(files / "token"),
        "spark.ui.enabled": "false",
    })  # fmt: skip
    return [
        sys.executable, "-m", "workloads", "ingest", "--data", str(raw), "--output", str(out),
        "--shard-size", "128", "--engine", "spark", "--spark-master", f"k8s://{control_plane.url}",
        "--spark-conf", *(f"{key}={value}" for key, value in conf.items()),
    ]  # fmt: skip


def test_the_ingest_step_runs_spark_executors_the_api_server_admits(
    cluster, control_plane: ControlPlane, tmp_path: pathlib.Path
):
    api, objects = cluster
    pod, container = ingest_step(objects)
    assert container["image"].rsplit("/", 1)[-1].startswith("mlstack-spark:")
    driver = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": DRIVER_POD, "namespace": TRAINING}}
    driver["spec"] = pod["spec"]
    assert api.create(driver).accepted  # the step's pod, which the executors name as their owner
    running(api, DRIVER_POD)
    template = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == spark.EXECUTOR_TEMPLATE
    )
    files = tmp_path / "files"
    files.mkdir()
    (files / spark.TEMPLATE_FILE).write_text(template["data"][spark.TEMPLATE_FILE])
    (files / "token").write_text(driver_token(api))
    raw, out = write_idx(tmp_path / "raw"), tmp_path / "dataset"
    argv = driver_argv(container, control_plane, files, raw, out)
    try:
        with ExecutorKubelet(api, tmp_path / "executors") as kubelet:
            result = subprocess.run(
                argv,
                cwd=ROOT,
                env=subprocess_env(PYSPARK_PYTHON=sys.executable),
                capture_output=True,
                text=True,
                timeout=600,
            )
            logs = "\n".join(p.read_text()[-2000:] for p in (tmp_path / "executors").glob("*.log"))
            assert result.returncode == 0, result.stderr[-4000:] + logs
            assert "forbidden" not in result.stderr, "the driver's Role lacks what Spark asks for"
            deadline = time.monotonic() + 60
            while kubelet.listed() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert kubelet.listed() == [], "Spark deletes its executor pods when it stops"
        executors = kubelet.pods
    finally:
        api.delete(driver)
    settings = yaml.safe_load(template["data"][spark.TEMPLATE_FILE])
    assert len(executors) >= 2
    for executor in executors:
        spec = executor["spec"]
        assert spec["priorityClassName"] == settings["spec"]["priorityClassName"]
        assert spec["automountServiceAccountToken"] is False
        assert executor["metadata"]["ownerReferences"][0]["name"] == DRIVER_POD
        (main,) = spec["containers"]
        declared = settings["spec"]["containers"][0]
        assert main["securityContext"] == declared["securityContext"]
        assert (main["command"], main["args"]) == (declared["command"], [spark_executor.ROLE])
        assert main["resources"]["limits"]["cpu"] == "1"
    datasets.ingest_idx(str(raw), str(tmp_path / "python"), shard_size=128)
    for split in datasets.SPLITS:
        assert records(out / split) == records(tmp_path / "python" / split), split
