"""Every object the program declares validates offline against the schemas of its target version."""

from __future__ import annotations

import copy

import pytest

from infra import config
from tests.infra.program import ProgramRun
from tests.infra.schemas import SchemaError, validate_core, validate_training_job

pytestmark = pytest.mark.xdist_group(name="infra-program")

CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TFJob", "PyTorchJob"}
REPLICA_TYPES = {"TFJob": {"Chief", "Worker", "PS", "Evaluator"}, "PyTorchJob": {"Master", "Worker"}}


def minor(run: ProgramRun) -> str:
    (namespace, *_) = run.objects_of_kind("Namespace")
    return namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce-version"].removeprefix("v")


def test_the_stacks_target_the_kubernetes_minor_of_their_k3s_release(run: ProgramRun):
    assert minor(run) == {"aws-example": "1.33", "baremetal-example": "1.32"}[run.stack]
    assert minor(run) in config.SUPPORTED_KUBERNETES_MINORS


def test_every_core_object_is_valid_under_strict_schemas(run: ProgramRun):
    core = [obj for obj in run.kubernetes_objects() if obj["kind"] not in CUSTOM_KINDS]
    assert len(core) >= 40
    for obj in core:
        validate_core(obj, minor(run))


def test_every_training_job_is_valid_for_the_training_operator_api(run: ProgramRun):
    jobs = run.objects_of_kind("TFJob") + run.objects_of_kind("PyTorchJob")
    assert {job["kind"] for job in jobs} == {"TFJob", "PyTorchJob"}
    for job in jobs:
        validate_training_job(job, minor(run))
        specs = job["spec"]["tfReplicaSpecs" if job["kind"] == "TFJob" else "pytorchReplicaSpecs"]
        assert set(specs) <= REPLICA_TYPES[job["kind"]], job["metadata"]["name"]


def test_the_strict_validator_rejects_an_unknown_field(aws_run: ProgramRun):
    (deployment, *_) = aws_run.objects_of_kind("Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(SchemaError, match="resource"):
        validate_core(broken, "1.33")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda job: job["spec"]["tfReplicaSpecs"]["Worker"].update(replica=2),
            "unknown fields \\['replica'\\]",
        ),
        (lambda job: job["spec"]["tfReplicaSpecs"]["Worker"].update(replicas="two"), "expected int"),
        (lambda job: job["spec"].pop("runPolicy"), "run_policy"),
        (
            lambda job: job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].update(
                cpu=1
            ),
            "cpu",
        ),
    ],
)
def test_the_training_job_validator_rejects_a_broken_job(aws_run: ProgramRun, change, message):
    (job,) = aws_run.objects_of_kind("TFJob")
    broken = copy.deepcopy(job)
    change(broken)
    with pytest.raises(SchemaError, match=message):
        validate_training_job(broken, "1.33")
