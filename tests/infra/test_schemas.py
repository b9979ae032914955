"""Every object the program declares validates offline against the schemas of its target version."""

from __future__ import annotations

import copy

import pytest

from infra import config
from tests.infra.program import ProgramRun
from tests.infra.schemas import SchemaError, validate_argo, validate_core, validate_training_job
from tests.infra.workflows import ARGO_KINDS, sample_submission, trial_jobs
from workloads.workflow import argo

pytestmark = pytest.mark.xdist_group(name="infra-program")

CUSTOM_KINDS = {
    "ServiceMonitor",
    "ScrapeConfig",
    "PrometheusRule",
    "ScaledObject",
    "TFJob",
    "PyTorchJob",
    *ARGO_KINDS,
}
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


def argo_objects(run: ProgramRun) -> list[dict]:
    return [obj for obj in run.kubernetes_objects() if obj["kind"] in ARGO_KINDS]


def tensorflow_template(run: ProgramRun) -> dict:
    (template,) = [
        obj for obj in argo_objects(run) if obj["metadata"]["name"] == argo.template_name("tensorflow")
    ]
    return template


def test_every_argo_object_is_valid_under_argos_schema_with_the_trial_job_it_embeds(run: ProgramRun):
    objects = argo_objects(run)
    templates = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "WorkflowTemplate"}
    assert templates == {argo.template_name(framework) for framework in argo.FRAMEWORKS}
    for obj in objects:
        validate_argo(obj, minor(run))


def test_the_trials_are_training_jobs_of_both_frameworks_with_known_replica_types(run: ProgramRun):
    jobs = [job for obj in argo_objects(run) for _, job in trial_jobs(obj)]
    assert sorted(job["kind"] for job in jobs) == ["PyTorchJob", "TFJob"]
    for job in jobs:
        specs = job["spec"]["tfReplicaSpecs" if job["kind"] == "TFJob" else "pytorchReplicaSpecs"]
        assert set(specs) <= REPLICA_TYPES[job["kind"]], job["kind"]


def test_the_retraining_schedule_is_declared_only_where_configured(run: ProgramRun):
    crons = [obj["metadata"]["name"] for obj in run.objects_of_kind("CronWorkflow")]
    assert crons == {"aws-example": ["retrain"], "baremetal-example": []}[run.stack]


@pytest.mark.parametrize("framework", list(argo.FRAMEWORKS))
def test_a_workflow_the_command_renders_is_valid_under_argos_schema(framework):
    validate_argo(sample_submission(framework).workflow(argo.NAMESPACE))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda spec: spec["templates"][1]["container"].update(imagePullPolcy="Always"),
            r"spec\.templates\[1\]\.container\.imagePullPolcy: not in the schema",
        ),
        (lambda spec: spec.update(paralelism=2), r"spec\.paralelism: not in the schema"),
        (lambda spec: spec.update(parallelism="two"), r"spec\.parallelism: Input should be a valid integer"),
        (lambda spec: spec.update(parallelism="2"), r"spec\.parallelism: '2' \(str\) is read as 2 \(int\)"),
        (
            lambda spec: spec["templates"][0]["dag"].update(failFast="no"),
            r"spec\.templates\[0\]\.dag\.failFast: 'no' \(str\) is read as False \(bool\)",
        ),
        (
            lambda spec: spec["templates"][0]["dag"]["tasks"][0].update(dependencies="trial"),
            r"spec\.templates\[0\]\.dag\.tasks\[0\]\.dependencies: Input should be a valid list",
        ),
    ],
    ids=["misspelt-container-field", "misspelt-spec-field", "wrong-type", "coerced-type", "bool", "list"],
)
def test_the_argo_validator_rejects_a_misspelt_field_or_a_wrong_type(aws_run: ProgramRun, change, message):
    broken = copy.deepcopy(tensorflow_template(aws_run))
    change(broken["spec"])
    with pytest.raises(SchemaError, match=message):
        validate_argo(broken)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace('"restartPolicy"', '"restartPolicyy"', 1), "restartPolicyy"),
        (lambda text: text.replace("{{inputs.parameters.model}}", "{{inputs.parameters.modle}}"), "modle"),
    ],
    ids=["broken-job", "unresolved-placeholder"],
)
def test_the_argo_validator_checks_the_trial_job_a_template_embeds(aws_run: ProgramRun, edit, message):
    broken = copy.deepcopy(tensorflow_template(aws_run))
    (trial,) = [t for t in broken["spec"]["templates"] if "resource" in t]
    trial["resource"]["manifest"] = edit(trial["resource"]["manifest"])
    with pytest.raises(SchemaError, match=message):
        validate_argo(broken)


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
    ((_, job),) = trial_jobs(tensorflow_template(aws_run))
    broken = copy.deepcopy(job)
    change(broken)
    with pytest.raises(SchemaError, match=message):
        validate_training_job(broken, "1.33")


def test_the_argo_validator_holds_the_cron_workflow_to_argo_4s_fields(aws_run: ProgramRun):
    (cron,) = aws_run.objects_of_kind("CronWorkflow")
    broken = copy.deepcopy(cron)
    broken["spec"]["schedule"] = broken["spec"].pop("schedules")[0]  # Argo 3's single schedule
    with pytest.raises(SchemaError, match=r"CronWorkflow retrain: spec\.schedules: Field required"):
        validate_argo(broken)
    broken = copy.deepcopy(cron)
    broken["spec"]["workflowSpec"]["workflowTemplateRef"]["nmae"] = "x"
    with pytest.raises(
        SchemaError, match=r"spec\.workflowSpec\.workflowTemplateRef\.nmae: not in the schema"
    ):
        validate_argo(broken)
