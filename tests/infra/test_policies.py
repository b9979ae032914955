"""Policies over every resource the program declares, for each example stack (mocked run)."""

from __future__ import annotations

import re

import pytest

from infra.specs import namespaces, spark, versions
from infra.specs.workload import CHECKOV_SKIP, GPU_RESOURCE, GPU_RUNTIME_CLASS, NON_ROOT_UID
from tests.infra.conftest import program_run
from tests.infra.pods import STEP_POD_TOKEN, containers, is_step_pod, pod_templates
from tests.infra.program import ProgramRun, run_program

pytestmark = pytest.mark.xdist_group(name="infra-program")

# Pods allowed to run as root, each with the reason (and they must live in a privileged namespace).
ROOT_EXEMPTIONS = {
    "DaemonSet nvidia-gpu/nvidia-device-plugin": "writes the kubelet's root-owned device-plugin socket directory",
    "DaemonSet nvidia-gpu/dcgm-exporter": "DCGM's host engine opens the GPU devices and needs CAP_SYS_ADMIN",
}
ADDED_CAPABILITIES = {"DaemonSet nvidia-gpu/dcgm-exporter": {"SYS_ADMIN"}}


def test_every_container_has_cpu_and_memory_requests_and_limits(run: ProgramRun):
    for where, _, template in pod_templates(run.kubernetes_objects()):
        for container in containers(template):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(kind, {}))
                assert not missing, f"{where} container {container['name']}: no {kind} for {missing}"


def test_every_pod_runs_as_non_root_unless_exempted_with_a_reason(run: ProgramRun):
    checked = 0
    for where, _, template in pod_templates(run.kubernetes_objects()):
        pod_context = template["spec"].get("securityContext", {})
        for container in containers(template):
            context = {**pod_context, **container.get("securityContext", {})}
            if where in ROOT_EXEMPTIONS:
                namespace = where.split()[1].split("/")[0]
                assert namespaces.PLANS[namespace].pod_security == "privileged", where
                continue
            assert context.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not set"
            assert context.get("runAsUser", 0) >= NON_ROOT_UID, (
                f"{where}: runs as uid {context.get('runAsUser')}"
            )
            checked += 1
    assert checked >= 5


def test_every_container_drops_all_capabilities_and_cannot_escalate(run: ProgramRun):
    for where, _, template in pod_templates(run.kubernetes_objects()):
        for container in containers(template):
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert set(context.get("capabilities", {}).get("add", [])) == ADDED_CAPABILITIES.get(
                where, set()
            ), where
            assert not context.get("privileged"), where
        assert template["spec"].get("securityContext", {}).get("seccompProfile") == {
            "type": "RuntimeDefault"
        }, where
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not template["spec"].get(flag), f"{where}: {flag}"


def test_no_image_is_latest_or_untagged(run: ProgramRun):
    images = [c["image"] for _, _, t in pod_templates(run.kubernetes_objects()) for c in containers(t)]
    assert images
    for image in images:
        name = image.rsplit("/", 1)[-1]
        assert "@sha256:" in image or re.search(r":[\w][\w.-]*$", name), f"{image} has neither tag nor digest"
        assert not image.endswith(":latest"), image


def test_gpu_containers_request_whole_gpus_and_run_with_the_nvidia_runtime_class(run: ProgramRun):
    gpu_pods = 0
    for where, _, template in pod_templates(run.kubernetes_objects()):
        spec = template["spec"]
        wants_gpu = [c for c in containers(template) if GPU_RESOURCE in c["resources"].get("limits", {})]
        if not wants_gpu:
            continue
        gpu_pods += 1
        assert spec.get("runtimeClassName") == GPU_RUNTIME_CLASS, (
            f"{where}: GPU pod without the nvidia runtime class"
        )
        assert any(t.get("key") == GPU_RESOURCE for t in spec.get("tolerations", [])), (
            f"{where}: no GPU toleration"
        )
        for container in wants_gpu:
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert requests.get(GPU_RESOURCE) == limits[GPU_RESOURCE], (
                f"{where}: GPU request differs from limit"
            )
            assert int(limits[GPU_RESOURCE]) >= 1
    assert gpu_pods >= 1, "each example stack runs at least one GPU workload"


def test_the_stack_config_gpu_requests_reach_the_pods(run: ProgramRun):
    """The workflow's trials get workflow.gpusPerWorker GPUs per training pod, GPU serving gets its GPU;
    nothing else asks for one."""
    from infra import config as stack_config
    from tests.infra.program import stack_settings

    settings = stack_settings(run.stack)
    values = {key.split(":", 1)[1]: value for key, value in settings.items() if key.startswith("mlstack:")}
    values["ansibleDir"] = "unused"
    parsed = stack_config.parse(values)
    objects = run.kubernetes_objects()
    expected = str(parsed.workflow.gpus_per_worker) if parsed.workflow.gpus_per_worker else None
    trials = [t for w, o, t in pod_templates(objects) if o["kind"] in ("TFJob", "PyTorchJob")]
    assert len(trials) == 2, "a Worker per TFJob trial and per (elastic) PyTorchJob trial"
    for template in trials:
        assert template["spec"]["containers"][0]["resources"]["limits"].get(GPU_RESOURCE) == expected
    (serving,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tf-serving"]
    limits = serving["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert (GPU_RESOURCE in limits) == parsed.serving.gpu


def test_autoscalers_keep_min_replicas_at_or_below_max(run: ProgramRun):
    scalers = run.objects_of_kind("HorizontalPodAutoscaler") + run.objects_of_kind("ScaledObject")
    assert scalers
    for scaler in scalers:
        spec = scaler["spec"]
        low = spec.get("minReplicas", spec.get("minReplicaCount"))
        high = spec.get("maxReplicas", spec.get("maxReplicaCount"))
        assert 1 <= low <= high, f"{scaler['kind']} {scaler['metadata']['name']}: min {low} max {high}"


def test_serving_has_a_pod_disruption_budget_that_selects_its_pods(run: ProgramRun):
    (deployment,) = [d for d in run.objects_of_kind("Deployment") if d["metadata"]["name"] == "tf-serving"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [
        b
        for b in run.objects_of_kind("PodDisruptionBudget")
        if b["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        and b["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    ]
    assert len(budgets) == 1
    assert budgets[0]["spec"].get("maxUnavailable") == 1


def test_secret_outputs_and_inputs_are_secret(run: ProgramRun):
    for name in ("kubeconfig", "grafanaAdminPassword") + (
        ("sshPrivateKey",) if run.stack == "aws-example" else ()
    ):
        value, is_secret = run.exports[name]
        assert value, name
        assert is_secret, f"stack output {name} is not a secret"
    for name, (value, is_secret) in run.exports.items():
        if not is_secret:
            assert "fake-password" not in str(value) and "PRIVATE KEY" not in str(value), (
                f"{name} leaks a secret"
            )
    (command,) = run.of_type("command:local:Command")
    assert "environment" in command.secret_inputs
    assert "k3s_token" in command.inputs["environment"]["MLSTACK_SECRET_VARS"]
    for field in ("create", "update", "interpreter", "triggers"):
        assert "fake-password" not in str(command.inputs.get(field, "")), (
            f"a secret reached the command's {field}"
        )
    (grafana,) = [
        r for r in run.resources if r.kind == "Secret" and r.inputs["metadata"]["name"] == "grafana-admin"
    ]
    assert "stringData" in grafana.secret_inputs


def test_no_security_group_opens_ssh_or_anything_else_to_the_internet_by_default(aws_run: ProgramRun):
    rules = aws_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert rules
    for rule in rules:
        assert rule.inputs.get("cidrIpv4") != "0.0.0.0/0", f"{rule.name} is open to the internet"
        if rule.inputs["fromPort"] <= 22 <= rule.inputs["toPort"]:
            assert rule.inputs["cidrIpv4"] == "203.0.113.0/24", rule.name


def test_ssh_is_open_to_the_internet_only_when_configured(ansible_project):
    run, error, _ = run_program(
        "aws-example", {"mlstack:ansibleDir": str(ansible_project), "mlstack:adminCidrs": ["0.0.0.0/0"]}
    )
    assert error is None
    open_ports = {
        (r.inputs["fromPort"], r.inputs["toPort"])
        for r in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("cidrIpv4") == "0.0.0.0/0"
    }
    assert open_ports == {(22, 22), (6443, 6443)}


def test_instances_require_imdsv2_and_every_volume_is_encrypted(aws_run: ProgramRun):
    instances = aws_run.of_type("aws:ec2/instance:Instance")
    assert len(instances) == 3
    for instance in instances:
        assert instance.inputs["metadataOptions"]["httpTokens"] == "required", instance.name
        assert instance.inputs["metadataOptions"]["httpPutResponseHopLimit"] == 1, instance.name
        assert instance.inputs["rootBlockDevice"]["encrypted"] is True, instance.name
    volumes = aws_run.of_type("aws:ebs/volume:Volume")
    assert len(volumes) == 2, "one data volume per HDFS/Kafka node"
    assert all(v.inputs["encrypted"] is True for v in volumes)


def test_gpu_pools_get_gpu_instance_types_and_data_volumes_get_mounted(aws_run: ProgramRun):
    instances = {i.name: i.inputs for i in aws_run.of_type("aws:ec2/instance:Instance")}
    assert instances["nodes-gpu-0"]["instanceType"] == "g5.2xlarge"
    assert "mkfs.xfs" in instances["nodes-gpu-0"]["userData"]
    assert "userData" not in instances["nodes-control-0"]


def test_the_ami_is_almalinux_9_looked_up_by_official_owner_and_name(aws_run: ProgramRun):
    (lookup,) = [args for token, args in aws_run.invokes if token == "aws:ec2/getAmi:getAmi"]
    assert lookup["owners"] == ["764336703387"]
    filters = {f["name"]: f["values"] for f in lookup["filters"]}
    assert filters["name"] == ["AlmaLinux OS 9*"]
    assert filters["architecture"] == ["x86_64"]
    assert lookup["mostRecent"] is True
    for instance in aws_run.of_type("aws:ec2/instance:Instance"):
        assert instance.inputs["ami"] == "ami-0123456789abcdef0"


def test_the_default_security_group_of_the_vpc_has_no_rules(aws_run: ProgramRun):
    (default,) = aws_run.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert not default.inputs.get("ingress") and not default.inputs.get("egress")


def test_every_namespace_has_pod_security_labels_and_a_default_deny_policy(run: ProgramRun):
    declared = run.objects_of_kind("Namespace")
    assert {n["metadata"]["name"] for n in declared} >= {
        "mlstack-training",
        "mlstack-serving",
        "mlstack-data",
        "monitoring",
    }
    policies = run.objects_of_kind("NetworkPolicy")
    for ns in declared:
        name, labels = ns["metadata"]["name"], ns["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] in ("restricted", "baseline", "privileged"), name
        assert labels["pod-security.kubernetes.io/warn"] == "restricted", name
        deny = [
            p
            for p in policies
            if p["metadata"]["namespace"] == name
            and p["spec"]["podSelector"] == {}
            and p["spec"]["policyTypes"] == ["Ingress", "Egress"]
            and p["spec"]["ingress"] == []
            and p["spec"]["egress"] == []
        ]
        assert deny, f"namespace {name} has no default-deny NetworkPolicy"


def test_workloads_run_only_in_platform_namespaces_with_a_strict_enough_pod_security_level(run: ProgramRun):
    declared = {n["metadata"]["name"]: n["metadata"]["labels"] for n in run.objects_of_kind("Namespace")}
    for where, obj, _ in pod_templates(run.kubernetes_objects()):
        namespace = obj["metadata"]["namespace"]
        assert namespace in declared, f"{where} runs outside the platform's namespaces"
        if where not in ROOT_EXEMPTIONS:
            assert declared[namespace]["pod-security.kubernetes.io/enforce"] == "restricted", where


def test_every_service_monitor_selects_a_declared_service_by_a_port_it_has(run: ProgramRun):
    services = run.objects_of_kind("Service")
    monitors = run.objects_of_kind("ServiceMonitor")
    assert len(monitors) >= 3
    for monitor in monitors:
        spec = monitor["spec"]
        matches = [
            s
            for s in services
            if s["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
            and spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert matches, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        for endpoint in spec["endpoints"]:
            assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in matches), monitor


def test_service_monitors_cover_dcgm_tf_serving_and_training_workers(run: ProgramRun):
    names = {m["metadata"]["name"] for m in run.objects_of_kind("ServiceMonitor")}
    assert {"dcgm-exporter", "tf-serving", "training-workers"} <= names


def test_pods_do_not_mount_api_tokens_and_rbac_has_no_wildcards_or_cluster_roles(run: ProgramRun):
    """Only the workflows' step pods hold a token (STEP_POD_TOKEN says why), and not the trials' pods."""
    steps = 0
    for where, _, template in pod_templates(run.kubernetes_objects()):
        if is_step_pod(where):
            # The Spark ingest's driver has an account of its own, which may also start executor pods.
            assert template["spec"]["serviceAccountName"] in {"workflow-runner", spark.DRIVER_ACCOUNT}, where
            steps += 1
            continue
        assert template["spec"].get("automountServiceAccountToken") is False, where
    assert steps and len(STEP_POD_TOKEN.split()) >= 4
    assert not run.objects_of_kind("ClusterRole") and not run.objects_of_kind("ClusterRoleBinding")
    for role in run.objects_of_kind("Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"Role {role['metadata']['name']}: wildcard in {field}"


def test_helm_releases_and_operator_manifests_are_pinned(run: ProgramRun):
    releases = run.of_type("kubernetes:helm.sh/v3:Release")
    assert {r.inputs["chart"] for r in releases} >= {"kube-prometheus-stack", "argo-workflows"}
    for release in releases:
        assert re.fullmatch(r"\d+\.\d+\.\d+", release.inputs["version"]), release.name
        assert release.inputs["repositoryOpts"]["repo"].startswith("https://"), release.name
    (operator,) = run.of_type("kubernetes:kustomize/v2:Directory")
    assert operator.inputs["directory"].endswith(f"?ref={versions.TRAINING_OPERATOR_VERSION}")


def release_values(run: ProgramRun, chart: str) -> dict:
    (release,) = [r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == chart]
    return release.inputs["values"]


def test_every_component_of_a_helm_chart_is_given_requests_and_limits(run: ProgramRun):
    argo = release_values(run, "argo-workflows")
    values = release_values(run, "kube-prometheus-stack")
    sized = [
        argo["controller"]["resources"],
        argo["server"]["resources"],
        argo["executor"]["resources"],
        values["prometheusOperator"]["resources"],
        values["prometheus"]["prometheusSpec"]["resources"],
        values["alertmanager"]["alertmanagerSpec"]["resources"],
        values["grafana"]["resources"],
        values["grafana"]["sidecar"]["resources"],
        values["kube-state-metrics"]["resources"],
        values["prometheus-node-exporter"]["resources"],
    ]
    for resources in sized:
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_kube_prometheus_stack_skips_the_control_plane_targets_k3s_does_not_expose(run: ProgramRun):
    values = release_values(run, "kube-prometheus-stack")
    for component in ("kubeEtcd", "kubeControllerManager", "kubeScheduler", "kubeProxy"):
        assert values[component]["enabled"] is False, component
    assert values["prometheus"]["prometheusSpec"]["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert values["grafana"]["admin"]["existingSecret"] == "grafana-admin"


def test_every_checkov_suppression_carries_a_reason(run: ProgramRun):
    annotated = [obj["metadata"].get("annotations", {}) for obj in run.kubernetes_objects()]
    annotated += [t["metadata"].get("annotations", {}) for _, _, t in pod_templates(run.kubernetes_objects())]
    suppressions = [
        value
        for annotations in annotated
        for key, value in annotations.items()
        if key.startswith(CHECKOV_SKIP)
    ]
    assert suppressions
    for value in suppressions:
        check, _, reason = value.partition("=")
        assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
        assert len(reason.split()) >= 4, f"{check}: the reason {reason!r} does not explain itself"


def test_every_component_uses_a_mlstack_module_type_token(run: ProgramRun):
    components = {r.type for r in run.resources if r.type.startswith("mlstack:")}
    assert len(components) >= 9
    for token in components:
        assert re.fullmatch(r"mlstack:[a-z]+:[A-Z][A-Za-z]+", token), token


def test_the_kubeconfig_points_at_the_public_api_endpoint(run: ProgramRun):
    import yaml

    kubeconfig = yaml.safe_load(run.exports["kubeconfig"][0])
    endpoint = run.exports["apiEndpoint"][0]
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{endpoint}:6443"


def test_the_program_runs_each_example_stack_from_the_same_cache(ansible_project):
    assert program_run("aws-example", ansible_project) is program_run("aws-example", ansible_project)
