"""The rehearsal's surroundings, shared by the test and the benchmark: a real HDFS laid out and owned as
the hdfs role leaves it; the serving pod the program declares for that store, its model mirror sidecar run
as generated and serve-dev (the stand-in for TF Serving) reading TF Serving's generated model config, with
the pod's paths (tests/support/pod_rehearsal.py); and the generated WorkflowTemplate of one framework with
its defaults pointing at them."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import re
from collections.abc import Iterator

import yaml

from infra.config import SUPPORTED_KUBERNETES_MINORS, Images, ModelSource, Resources, Serving
from infra.specs import model_store
from infra.specs import serving as serving_specs
from infra.specs import workflow as workflow_specs
from tests.infra.schemas import validate_training_job
from tests.support.argo_rehearsal import Rehearsal
from tests.support.hadoop_release import HdfsCluster
from tests.support.pod_rehearsal import LocalPod
from tests.workloads.serving.processes import DevServer, ServiceProcess, start_dev_server, wait_until
from tests.workloads.support import ROOT, subprocess_env
from workloads.serving.client import make_client
from workloads.serving.tfs_config import MODEL_NAME
from workloads.workflow import argo
from workloads.workflow.search import Grid

FRAMEWORK = "tensorflow"
IMAGES = Images("registry.example/mlstack", "rehearsal")
# Small enough for two cores: 1,024 synthetic records, one epoch, two workers per trial.
DATA = {"synthetic-train": "1024", "synthetic-test": "512", "shard-size": "256", "smoke-records": "512"}


@dataclasses.dataclass
class Rig:
    hdfs: HdfsCluster
    serving: DevServer
    rehearsal: Rehearsal
    tracking_uri: str = ""  # the stack's tracking server, when it runs one

    @property
    def store(self) -> str:
        return f"{self.hdfs.url}/mlstack/models"

    def served_version(self) -> int:
        with make_client(self.serving.rest_url, MODEL_NAME) as client:
            return client.latest_available_version()


def declared(kind: str, objects: list[dict]) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind]
    return obj


def local_model_config(pod: LocalPod, config_map: dict, directory: pathlib.Path) -> pathlib.Path:
    """TF Serving's generated models.config with its paths as the pod has them."""
    text = config_map["data"][serving_specs.MODEL_FILE]
    local = re.sub(r'base_path: "([^"]+)"', lambda m: f'base_path: "{pod.local(m[1])}"', text)
    assert local != text, "the model config names no path in the pod's volumes"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / serving_specs.MODEL_FILE
    path.write_text(local)
    return path


def role_directories() -> list[dict[str, str]]:
    """The hdfs role's directories, their owners rendered as the role renders them."""
    defaults = yaml.safe_load((ROOT / "ansible/roles/hdfs/defaults/main.yml").read_text())
    user = defaults["hdfs_workloads_user"]
    return [
        {**entry, "owner": entry["owner"].replace("{{ hdfs_workloads_user }}", user)}
        for entry in defaults["hdfs_directories"]
    ]


def lay_out(hdfs: HdfsCluster) -> None:
    for entry in role_directories():
        for args in (
            ("-mkdir", "-p", entry["path"]),
            ("-chown", f"{entry['owner']}:{entry['group']}", entry["path"]),
            ("-chmod", entry["mode"], entry["path"]),
        ):
            done = hdfs.hdfs("dfs", *args)
            assert done.returncode == 0, done.stderr[-2000:]


@contextlib.contextmanager
def serving_pod(store: ModelSource, workdir: pathlib.Path) -> Iterator[DevServer]:
    """The serving pod for ``store``: its mirror sidecar as generated, then TF Serving's stand-in once the
    sidecar's startup probe passes (as the kubelet orders a native sidecar), before anything is promoted."""
    objects = serving_specs.objects(Serving(model_source=store), IMAGES, "10.0.0.0/16")
    (mirror,) = declared("Deployment", objects)["spec"]["template"]["spec"]["initContainers"]
    pod = LocalPod({"/tmp": workdir / "tmp", model_store.MIRROR_DIR: workdir / "mirror"})
    sidecar: ServiceProcess = pod.start(mirror, workdir / "logs")
    server = None
    try:
        wait_until(lambda: pod.probe(mirror, "startupProbe"), 120, "the model mirror's startup probe")
        config = local_model_config(pod, declared("ConfigMap", objects), workdir / "config")
        server = start_dev_server(workdir / "serve-dev", "--model-config-file", str(config))
        yield server
    finally:
        if server is not None:
            server.terminate()
        sidecar.terminate()


@contextlib.contextmanager
def running(hadoop_home: pathlib.Path, workdir: pathlib.Path, tracking_uri: str = "") -> Iterator[Rig]:
    """The rig; with ``tracking_uri`` the stack runs a tracking server there (trials and select track)."""
    with HdfsCluster.running(hadoop_home, workdir / "hdfs") as hdfs:
        lay_out(hdfs)
        store = ModelSource(kind="hdfs", base=f"{hdfs.url}/mlstack/models")
        with serving_pod(store, workdir / "serving-pod") as serving:
            defaults = workflow_specs.WorkflowDefaults(
                dataset=f"{hdfs.url}/mlstack/datasets/fashion-mnist/shards",
                runs=f"{store.base}/runs",
                model_source=store,
                serving_url=serving.rest_url,
                trial_resources=Resources(cpu="1", memory="2Gi"),
                checkpoint_every=8,
                tracking_uri=tracking_uri,
            )
            rehearsal = Rehearsal(
                workflow_specs.workflow_template(FRAMEWORK, IMAGES, defaults),
                workdir / "rehearsal",
                env=subprocess_env(),
                check_job=lambda job: validate_training_job(job, SUPPORTED_KUBERNETES_MINORS[-1]),
            )
            yield Rig(hdfs, serving, rehearsal, tracking_uri)


def submission(models: tuple[str, ...], rates: tuple[float, ...], min_trials: int = 1) -> argo.Submission:
    return argo.Submission(
        framework=FRAMEWORK,
        grid=Grid(models, rates, (64,)),
        epochs=1,
        seed=0,
        workers_per_trial=2,
        min_trials=min_trials,
        parallelism=1,
        overrides=DATA,
    )
