"""The rehearsal's surroundings, shared by the test and the benchmark: a real HDFS laid out and owned as
the hdfs role leaves it, serve-dev (the stand-in for TF Serving) on the model store, and the generated
WorkflowTemplate of one framework with its defaults pointing at them."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from collections.abc import Iterator

import yaml

from infra.config import SUPPORTED_KUBERNETES_MINORS, Images, Resources
from infra.specs import workflow as workflow_specs
from tests.infra.schemas import validate_training_job
from tests.support.argo_rehearsal import Rehearsal
from tests.support.hadoop_release import HdfsCluster
from tests.workloads.serving.processes import DevServer, start_dev_server
from tests.workloads.support import ROOT, subprocess_env
from workloads.serving.client import make_client
from workloads.serving.tfs_config import MODEL_NAME
from workloads.workflow import argo
from workloads.workflow.search import Grid

FRAMEWORK = "tensorflow"
# Small enough for two cores: 1,024 synthetic records, one epoch, two workers per trial.
DATA = {"synthetic-train": "1024", "synthetic-test": "512", "shard-size": "256", "smoke-records": "512"}


@dataclasses.dataclass
class Rig:
    hdfs: HdfsCluster
    serving: DevServer
    rehearsal: Rehearsal

    @property
    def store(self) -> str:
        return f"{self.hdfs.url}/mlstack/models"

    def served_version(self) -> int:
        with make_client(self.serving.rest_url, MODEL_NAME) as client:
            return client.latest_available_version()


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
def running(hadoop_home: pathlib.Path, workdir: pathlib.Path) -> Iterator[Rig]:
    with HdfsCluster.running(hadoop_home, workdir / "hdfs") as hdfs:
        lay_out(hdfs)
        store = f"{hdfs.url}/mlstack/models"
        # Started before anything is promoted, as TF Serving on a first deploy.
        serving = start_dev_server(workdir / "serve-dev", "--model-base-path", f"{store}/{MODEL_NAME}")
        try:
            defaults = workflow_specs.WorkflowDefaults(
                dataset=f"{hdfs.url}/mlstack/datasets/fashion-mnist/shards",
                runs=f"{store}/runs",
                model_store=store,
                serving_url=serving.rest_url,
                trial_resources=Resources(cpu="1", memory="2Gi"),
                checkpoint_every=8,
            )
            images = Images("registry.example/mlstack", "rehearsal")
            rehearsal = Rehearsal(
                workflow_specs.workflow_template(FRAMEWORK, images, defaults),
                workdir / "rehearsal",
                env=subprocess_env(),
                check_job=lambda job: validate_training_job(job, SUPPORTED_KUBERNETES_MINORS[-1]),
            )
            yield Rig(hdfs, serving, rehearsal)
        finally:
            serving.terminate()


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
