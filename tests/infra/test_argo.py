"""Argo Workflows on the platform: the chart's values, who may do what, what may connect where, and the
templates and retraining schedule the stack declares."""

from __future__ import annotations

from typing import Any

import pytest

from infra.specs import data, monitoring, namespaces, ports, training, versions
from infra.specs import workflow as workflow_specs
from tests.infra.pods import JOB_KINDS, pod_templates
from tests.infra.program import ProgramRun, run_program, stack_settings
from workloads import cli
from workloads.core import settings as core_settings
from workloads.workflow import argo

pytestmark = pytest.mark.xdist_group(name="infra-program")


def argo_release(run: ProgramRun) -> Any:
    """The argo-workflows release (its chart is a name, or an archive path when air-gapped)."""
    (release,) = [
        r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "argo-workflows"
    ]
    return release


def argo_values(run: ProgramRun) -> dict[str, Any]:
    return argo_release(run).inputs["values"]


def named(run: ProgramRun, kind: str, namespace: str, name: str) -> dict[str, Any]:
    (obj,) = [
        o
        for o in run.objects_of_kind(kind)
        if o["metadata"]["namespace"] == namespace and o["metadata"]["name"] == name
    ]
    return obj


def selects(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels, Exists / DoesNotExist expressions) selects ``pod_labels``."""
    if not selector.get("matchLabels", {}).items() <= pod_labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        present = expression["key"] in pod_labels
        if present != {"Exists": True, "DoesNotExist": False}[expression["operator"]]:
            return False
    return True


def allowed(policy: dict[str, Any], direction: str) -> set[tuple[str, int]]:
    """(peer, port) pairs a policy allows: a peer is ``cidr:<block>`` or ``ns:<namespace>``."""
    key = "to" if direction == "egress" else "from"
    pairs = set()
    for rule in policy["spec"].get(direction, []):
        for peer in rule.get(key, []):
            where = (
                f"cidr:{peer['ipBlock']['cidr']}"
                if "ipBlock" in peer
                else f"ns:{peer['namespaceSelector']['matchLabels']['kubernetes.io/metadata.name']}"
            )
            pairs.update((where, port["port"]) for port in rule["ports"])
    return pairs


# A step pod as Argo labels it (the trials' training pods carry the workflow's label too).
STEP_POD = {
    workflow_specs.WORKFLOW_LABEL: "train-select-serve-x7k2p",
    "workflows.argoproj.io/completed": "false",
}


def trial_pod_labels(run: ProgramRun) -> list[dict[str, str]]:
    pods = pod_templates(run.kubernetes_objects())
    return [template["metadata"]["labels"] for _, owner, template in pods if owner["kind"] in JOB_KINDS]


def test_the_chart_is_pinned_and_installs_into_its_own_namespace(run: ProgramRun):
    assert (versions.ARGO_WORKFLOWS.version, versions.ARGO_WORKFLOWS.app_version) == ("1.0.18", "v4.0.6")
    release = argo_release(run)
    assert release.inputs["chart"] == "argo-workflows"
    assert release.inputs["namespace"] == namespaces.ARGO
    assert release.inputs["repositoryOpts"]["repo"] == "https://argoproj.github.io/argo-helm"
    assert namespaces.PLANS[namespaces.ARGO].pod_security == "restricted"


def test_an_air_gapped_install_takes_the_chart_from_charts_dir(ansible_project):
    run, error, _ = run_program(
        "baremetal-example", {"mlstack:ansibleDir": str(ansible_project), "mlstack:chartsDir": "charts"}
    )
    assert error is None, error
    charts = {r.inputs["chart"] for r in run.of_type("kubernetes:helm.sh/v3:Release")}
    assert any(chart.endswith("/charts/argo-workflows-1.0.18.tgz") for chart in charts), charts
    # Nothing downloads at install time: the chart's own CRDs, not the hook Job that fetches the full ones.
    assert argo_values(run)["crds"] == {"install": True, "full": False, "keep": True}


def test_the_controller_and_server_watch_only_the_training_namespace(run: ProgramRun):
    values = argo_values(run)
    watch = ["--namespaced", "--managed-namespace", namespaces.TRAINING]
    for component in ("controller", "server"):
        assert values[component]["extraArgs"] == watch, component
        assert values[component]["clusterWorkflowTemplates"] == {"enabled": False}, component
    assert values["controller"]["workflowNamespaces"] == [namespaces.TRAINING]
    assert values["workflow"] == {"serviceAccount": {"create": False}, "rbac": {"create": False}}


def test_the_server_authenticates_every_call_with_the_callers_own_token(run: ProgramRun):
    server = argo_values(run)["server"]
    assert server["authModes"] == ["client"]
    assert server["secure"] is True


def test_prometheus_scrapes_the_controllers_metrics(run: ProgramRun):
    controller = argo_values(run)["controller"]
    assert controller["metricsConfig"] == {"enabled": True, "port": namespaces.ARGO_CONTROLLER_METRICS}
    assert controller["serviceMonitor"]["enabled"] is True
    assert controller["serviceMonitor"]["additionalLabels"] == {"release": monitoring.RELEASE}
    (stack,) = [
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "kube-prometheus-stack"
    ]
    assert stack.inputs["name"] == monitoring.RELEASE
    scrape = named(run, "NetworkPolicy", namespaces.ARGO, "allow-prometheus-scrape")
    assert allowed(scrape, "ingress") == {(f"ns:{namespaces.MONITORING}", namespaces.ARGO_CONTROLLER_METRICS)}
    assert scrape["spec"]["ingress"][0]["from"][0]["podSelector"] == {
        "matchLabels": namespaces.PROMETHEUS_POD
    }


@pytest.mark.parametrize("component", ["controller", "server", "executor"])
def test_argos_containers_run_non_root_read_only_without_capabilities(run: ProgramRun, component):
    values = argo_values(run)[component]
    context = values["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    if component != "executor":  # the executor's containers run in the step pod, as its pod context says
        assert values["podSecurityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }


def test_argos_namespace_reaches_only_the_api_server(run: ProgramRun):
    egress = [
        p for p in run.objects_of_kind("NetworkPolicy") if p["metadata"]["namespace"] == namespaces.ARGO
    ]
    api = named(run, "NetworkPolicy", namespaces.ARGO, "allow-api-server")
    node_cidr = api["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"]
    assert allowed(api, "egress") == {(f"cidr:{node_cidr}", ports.K3S_API)}
    others = {p["metadata"]["name"] for p in egress if p["spec"].get("egress") and p is not api}
    assert others == {"allow-dns"}


def test_the_workflow_runner_may_only_run_training_jobs_read_pods_and_report_outputs(run: ProgramRun):
    name = workflow_specs.SERVICE_ACCOUNT
    role = named(run, "Role", namespaces.TRAINING, name)
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    jobs = {
        ("kubeflow.org", resource, verb)
        for resource in ("tfjobs", "pytorchjobs")
        for verb in ("create", "get", "list", "watch", "patch", "delete")
    }
    pods = {("", "pods", verb) for verb in ("get", "list", "watch")}
    results = {("argoproj.io", "workflowtaskresults", verb) for verb in ("create", "patch")}
    assert granted == jobs | pods | results
    binding = named(run, "RoleBinding", namespaces.TRAINING, name)
    assert binding["roleRef"]["name"] == name
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": namespaces.TRAINING}]
    named(run, "ServiceAccount", namespaces.TRAINING, name)
    for template in run.objects_of_kind("WorkflowTemplate"):
        assert template["spec"]["serviceAccountName"] == name


def test_submitters_may_submit_workflows_from_the_templates_and_only_read_the_trials(run: ProgramRun):
    role = named(run, "Role", namespaces.TRAINING, training.SUBMITTER_ROLE)
    rules = {
        (rule["apiGroups"][0], resource): set(rule["verbs"])
        for rule in role["rules"]
        for resource in rule["resources"]
    }
    read = {"get", "list", "watch"}
    assert rules == {
        ("argoproj.io", "workflows"): {"create", *read},
        ("argoproj.io", "workflowtemplates"): {"get", "list"},
        ("kubeflow.org", "tfjobs"): read,
        ("kubeflow.org", "pytorchjobs"): read,
        ("", "pods"): read,
        ("", "pods/log"): read,
        ("", "events"): read,
    }


def test_workflow_step_pods_reach_the_api_server_and_tf_serving_and_the_trials_pods_do_not(run: ProgramRun):
    steps = named(run, "NetworkPolicy", namespaces.TRAINING, "allow-workflow-steps")
    node_cidr = steps["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"]
    assert allowed(steps, "egress") == {
        (f"cidr:{node_cidr}", ports.K3S_API),
        (f"ns:{namespaces.SERVING}", ports.TFS_REST),
    }
    assert selects(steps["spec"]["podSelector"], STEP_POD)
    trial_pods = trial_pod_labels(run)
    assert trial_pods and all(workflow_specs.WORKFLOW_LABEL in labels for labels in trial_pods)
    assert not any(selects(steps["spec"]["podSelector"], labels) for labels in trial_pods)


def test_tf_serving_admits_the_workflow_step_pods_on_its_rest_port_only(run: ProgramRun):
    clients = named(run, "NetworkPolicy", namespaces.SERVING, "allow-serving-clients")
    step_rules = [
        rule
        for rule in clients["spec"]["ingress"]
        if any(
            peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            == namespaces.TRAINING
            for peer in rule["from"]
        )
    ]
    (rule,) = step_rules
    assert rule["ports"] == [{"protocol": "TCP", "port": ports.TFS_REST}]
    (peer,) = rule["from"]
    assert selects(peer["podSelector"], STEP_POD)
    assert not any(selects(peer["podSelector"], labels) for labels in trial_pod_labels(run))


def framework_template(run: ProgramRun, framework: str) -> dict[str, Any]:
    (template,) = [
        t
        for t in run.objects_of_kind("WorkflowTemplate")
        if t["metadata"]["name"] == argo.template_name(framework)
    ]
    return template


def test_the_templates_defaults_come_from_the_stacks_data_serving_and_workflow_settings(run: ProgramRun):
    store = {"aws-example": "s3://example-mlstack-models/serving", "baremetal-example": "/models"}[run.stack]
    for framework in argo.FRAMEWORKS:
        spec = framework_template(run, framework)["spec"]
        defaults = {p["name"]: p["value"] for p in spec["arguments"]["parameters"] if "value" in p}
        assert defaults["model-store"] == store
        assert (
            defaults["serving-url"] == f"http://tf-serving.mlstack-serving.svc.cluster.local:{ports.TFS_REST}"
        )
        assert (defaults["dataset"], defaults["runs"]) == (data.DATASET_SHARDS, f"{data.MODELS}/runs")
        assert spec["parallelism"] == {"aws-example": 2, "baremetal-example": 1}[run.stack]


def retrain_command_flags(stack: str) -> tuple[dict[str, Any], list[str]]:
    """The stack's retrain settings, and the same as flags of ``python -m workloads workflow``."""
    workflow = stack_settings(stack)["mlstack:workflow"]
    retrain = workflow["retrain"]
    flags = [
        "--framework", retrain["framework"],
        "--models", ",".join(retrain["models"]),
        "--learning-rates", ",".join(str(rate) for rate in retrain["learningRates"]),
        "--batch-sizes", ",".join(str(size) for size in retrain["batchSizes"]),
        "--epochs", str(retrain["epochs"]),
        "--workers-per-trial", str(retrain["workersPerTrial"]),
        "--parallelism", str(workflow["parallelism"]),
    ]  # fmt: skip
    return retrain, flags


def test_the_retraining_schedule_submits_what_the_workflow_command_would(aws_run: ProgramRun):
    retrain, flags = retrain_command_flags("aws-example")
    given = {
        k: v for k, v in vars(cli.build_parser().parse_args(["workflow", *flags])).items() if v is not None
    }
    given = {k: v for k, v in given.items() if k not in ("command", "config", "log_format", "log_level")}
    command = core_settings.resolve(cli.load_command("workflow").Config, given, {})
    (cron,) = aws_run.objects_of_kind("CronWorkflow")
    spec = cron["spec"]
    assert spec["schedules"] == [retrain["schedule"]]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["workflowSpec"] == command.submission().workflow(argo.NAMESPACE)["spec"]
    referenced = spec["workflowSpec"]["workflowTemplateRef"]["name"]
    assert referenced in {t["metadata"]["name"] for t in aws_run.objects_of_kind("WorkflowTemplate")}


def test_a_trial_restarts_only_retryable_exits_frees_its_running_pods_and_lives_as_long_as_its_workflow(
    run: ProgramRun,
):
    from tests.infra import workflows

    for template in run.objects_of_kind("WorkflowTemplate"):
        (trial,) = [t for t in template["spec"]["templates"] if "resource" in t]
        assert trial["resource"]["setOwnerReference"] is True  # deleted with the Workflow
        assert (
            template["spec"]["ttlStrategy"]["secondsAfterFailure"]
            >= template["spec"]["ttlStrategy"]["secondsAfterSuccess"]
        )
        for _, job in workflows.trial_jobs(template):
            policy = job["spec"]["runPolicy"]
            # No TTL of its own: the operator would delete it (and its logs) behind the Workflow's back.
            assert "ttlSecondsAfterFinished" not in policy
            assert policy["cleanPodPolicy"] == "Running"
            replicas = job["spec"][JOB_KINDS[job["kind"]]].values()
            assert {r["restartPolicy"] for r in replicas} == {"ExitCode"}
