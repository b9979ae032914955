"""What a real API server (tests/support/control_plane.py: the Kubernetes release the stacks target, RBAC,
the default admission chain with Pod Security) says of the objects the program declares.

For each example stack, every object is applied server-side in dependency order, as Pulumi applies it;
the pods that the workloads' controllers would create from their templates are created in a dry run,
where Pod Security enforces; deliberately broken variants are refused; and each service account the
program creates may do exactly what docs/interfaces.md says and no more. Custom kinds are admitted
against CRDs that controller-gen generates from their projects' Go API types (`make crds`, tools/crds/);
what those CRDs cannot express (the training operator's webhook checks) stays in test_schemas.py.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra import workflows
from tests.infra.conftest import program_run
from tests.infra.pods import object_name, pod_templates
from tests.infra.program import STACKS
from tests.support import interfaces
from tests.support.control_plane import ControlPlane, install_crds
from tests.support.kube_client import Client, Verdict, describe

# One worker holds the control plane; the tests take it in turn (the stacks share its namespaces).
pytestmark = [pytest.mark.xdist_group("api-server"), pytest.mark.slow]

# Apply order: what others refer to first (namespaces, the classes pods name, the accounts, roles and
# config they use, the defaults and quotas that admission applies to pods), then everything else.
_FIRST = {"CustomResourceDefinition", "Namespace", "PriorityClass", "RuntimeClass"}
_SECOND = {"ServiceAccount", "Role", "ClusterRole", "ConfigMap", "Secret", "LimitRange", "ResourceQuota"}
POD_SECURITY = "pod-security.kubernetes.io"


def apply_order(obj: dict[str, Any]) -> int:
    return 0 if obj["kind"] in _FIRST else 1 if obj["kind"] in _SECOND else 2


@dataclasses.dataclass(frozen=True)
class Admission:
    """One stack's objects as the server took them: a verdict each, or None where the server serves no
    such kind (a custom kind without its CRD)."""

    stack: str
    results: list[tuple[dict[str, Any], Verdict | None]]

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [obj for obj, _ in self.results]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def report(self) -> str:
        lines = [
            f"{describe(obj)}: {verdict or 'not admitted: the server has no CRD for it'}"
            for obj, verdict in self.results
        ]
        return f"{self.stack}:\n  " + "\n  ".join(lines)


def submitted_jobs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training jobs the workflow templates' resource steps create, in their template's namespace."""
    jobs = []
    for obj in objects:
        if obj["kind"] in workflows.ARGO_KINDS:
            for _, job in workflows.trial_jobs(obj):
                created = workflows.as_created(job)
                meta = {"namespace": obj["metadata"]["namespace"], **created["metadata"]}
                jobs.append({**created, "metadata": meta})
    return jobs


def custom_kinds(ansible_project: pathlib.Path) -> set[tuple[str, str]]:
    """(group, kind) of everything both stacks declare and their workflows submit."""
    kinds = set()
    for stack in STACKS:
        objects = program_run(stack, ansible_project).kubernetes_objects()
        kinds |= {
            (obj["apiVersion"].rpartition("/")[0], obj["kind"]) for obj in objects + submitted_jobs(objects)
        }
    return kinds


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane, ansible_project: pathlib.Path) -> Iterator[Client]:
    """The API server's admin, with the CRDs of the program's custom kinds installed."""
    with control_plane.session() as session:
        client = Client(control_plane.url, session)
        install_crds(client, custom_kinds(ansible_project))
        yield client


def default_service_account(api: Client, namespace: str) -> None:
    """What the controller manager's ServiceAccount controller does for every namespace (no controller runs
    here): its `default` account, which pods that name none run as."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace},
    }
    verdict = api.create(account)
    assert verdict.accepted or verdict.status == 409, verdict


@pytest.fixture(scope="module", params=STACKS)
def admitted(
    request: pytest.FixtureRequest, api: Client, ansible_project: pathlib.Path
) -> Iterator[Admission]:
    """The stack's objects applied; afterwards deleted again (but the namespaces: without a controller
    manager they would stay Terminating), so that the next stack starts from its own objects."""
    objects = sorted(program_run(request.param, ansible_project).kubernetes_objects(), key=apply_order)
    results = []
    for obj in objects:
        results.append((obj, api.apply(obj) if api.resource(obj) else None))
        if obj["kind"] == "Namespace":
            default_service_account(api, obj["metadata"]["name"])
    admission = Admission(request.param, results)
    yield admission
    for obj, verdict in reversed(admission.results):
        if verdict is not None and verdict.accepted and obj["kind"] != "Namespace":
            api.delete(obj)


def pod_security(namespace: dict[str, Any], mode: str) -> str:
    return namespace["metadata"]["labels"][f"{POD_SECURITY}/{mode}"]


def expected_warning(admission: Admission, obj: dict[str, Any], warning: str) -> bool:
    """Pod Security warns at the level its namespace's `warn` label names; where that is stricter than
    `enforce` (the GPU and monitoring namespaces: privileged by design, restricted warned so that every
    exception stays visible), the warning is the namespace's declared intent, not a defect."""
    namespaces = {ns["metadata"]["name"]: ns for ns in admission.of_kind("Namespace")}
    namespace = namespaces.get(obj["metadata"].get("namespace", ""))
    return (
        namespace is not None
        and pod_security(namespace, "warn") != pod_security(namespace, "enforce")
        and f'would violate PodSecurity "{pod_security(namespace, "warn")}:' in warning
    )


def admitted_as_declared(admission: Admission, obj: dict[str, Any], verdict: Verdict) -> bool:
    return verdict.accepted and all(expected_warning(admission, obj, w) for w in verdict.warnings)


def test_every_object_the_program_declares_is_admitted_without_warnings(admitted: Admission):
    served = [(obj, verdict) for obj, verdict in admitted.results if verdict is not None]
    assert len(served) >= 40, admitted.report()
    bad = [describe(obj) for obj, verdict in served if not admitted_as_declared(admitted, obj, verdict)]
    assert not bad, f"refused or warned: {', '.join(bad)}\n{admitted.report()}"


def as_pod(number: int, owner: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The Pod a controller makes from ``template`` (named after its owner, numbered to be unique)."""
    name = f"{object_name(owner)[:50].rstrip('-')}-{number}"
    meta = {**template.get("metadata", {}), "name": name, "namespace": owner["metadata"]["namespace"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


def test_the_pods_every_template_makes_pass_pod_security_and_admission(admitted: Admission, api: Client):
    """Pod Security enforces on Pods only (on Deployments it warns): each pod template, of the workloads
    and of the training jobs and workflow steps too, is created as the Pod its controller would create, in
    a dry run, where every admission plugin (Pod Security, ServiceAccount, LimitRanger, ResourceQuota,
    Priority, RuntimeClass) has its say."""
    results = [
        (where, api.create(as_pod(number, owner, template), dry_run=True))
        for number, (where, owner, template) in enumerate(pod_templates(admitted.objects))
    ]
    assert len(results) >= 5
    report = "\n  ".join(f"{where}: {verdict}" for where, verdict in results)
    assert all(verdict.accepted for _, verdict in results), f"{admitted.stack}:\n  {report}"


def test_every_training_job_a_workflow_submits_is_admitted_without_warnings(admitted: Admission, api: Client):
    """Created in a dry run, as Argo's resource step creates it, against the training operator's CRD."""
    results = [(job, api.create(job, dry_run=True)) for job in submitted_jobs(admitted.objects)]
    assert {job["kind"] for job, _ in results} == {"TFJob", "PyTorchJob"}
    report = "\n  ".join(f"{describe(job)}: {verdict}" for job, verdict in results)
    assert all(verdict.accepted and not verdict.warnings for _, verdict in results), (
        f"{admitted.stack}:\n  {report}"
    )


def tf_serving(admitted: Admission) -> dict[str, Any]:
    (deployment,) = [obj for obj in admitted.of_kind("Deployment") if obj["metadata"]["name"] == "tf-serving"]
    return copy.deepcopy(deployment)


def test_a_pod_running_as_root_is_refused_in_a_restricted_namespace(admitted: Admission, api: Client):
    deployment = tf_serving(admitted)
    (namespace,) = [ns for ns in admitted.of_kind("Namespace") if ns["metadata"]["name"] == "mlstack-serving"]
    assert pod_security(namespace, "enforce") == "restricted"
    template = deployment["spec"]["template"]
    for holder in [template["spec"], *template["spec"]["containers"]]:
        holder["securityContext"] = {
            **holder.get("securityContext", {}),
            "runAsNonRoot": False,
            "runAsUser": 0,
        }
    as_root = as_pod(0, deployment, template)
    verdict = api.create(as_root, dry_run=True)
    assert verdict.status == 403 and 'violates PodSecurity "restricted:' in verdict.message, verdict
    # On the Deployment itself Pod Security only warns: the ReplicaSet's pods are what it refuses.
    verdict = api.create(
        {**deployment, "metadata": {**deployment["metadata"], "name": "as-root"}}, dry_run=True
    )
    assert verdict.accepted and any("runAsNonRoot" in warning for warning in verdict.warnings), verdict


def test_a_deployment_whose_selector_does_not_match_its_labels_is_refused(admitted: Admission, api: Client):
    deployment = tf_serving(admitted)
    deployment["metadata"]["name"] = "mismatched"
    deployment["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": "something-else"}}
    verdict = api.create(deployment, dry_run=True)
    assert verdict.status == 422 and "`selector` does not match template `labels`" in verdict.message, verdict


# -- least privilege -----------------------------------------------------------------------------------

PERMISSIONS = "Service account permissions"


@dataclasses.dataclass(frozen=True)
class Permissions:
    """One row of the docs/interfaces.md table: what the account may do in its own namespace (every
    grant beyond what any authenticated user has), and requests it must be denied anywhere."""

    namespace: str
    name: str
    may: frozenset[tuple[str, str, str]]
    must_not: tuple[tuple[str, str, str], ...]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def _grants(span: str) -> list[tuple[str, str, str]]:
    """`create,get kubeflow.org/tfjobs` -> (verb, group, resource) for each verb; no group is core."""
    verbs, resource = span.split()
    group, _, plural = resource.rpartition("/")
    return [(verb, group, plural) for verb in verbs.split(",")]


def documented_permissions() -> list[Permissions]:
    rows = []
    for account, may, must_not in interfaces.table(PERMISSIONS):
        namespace, name = interfaces.code_spans(account)[0].split("/")
        allowed = frozenset(g for span in interfaces.code_spans(may) for g in _grants(span))
        denied = tuple(g for span in interfaces.code_spans(must_not) for g in _grants(span))
        rows.append(Permissions(namespace, name, allowed, denied))
    return rows


def granted(api: Client, user: str, namespace: str) -> set[tuple[str, str, str]]:
    """What ``user`` may do in ``namespace``, as `kubectl auth can-i --list --as` reads it."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    answer = api.post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", review, impersonate=user)
    return {
        (verb, group, resource)
        for rule in answer["status"]["resourceRules"]
        for verb in rule["verbs"]
        for group in rule.get("apiGroups", [""])
        for resource in rule.get("resources", [])
    }


def allowed(api: Client, user: str, verb: str, group: str, resource: str, namespace: str) -> bool:
    namespace_of_account = user.split(":")[2]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace_of_account}",
                "system:authenticated",
            ],
            "resourceAttributes": {
                "verb": verb,
                "group": group,
                "resource": resource,
                "namespace": namespace,
            },
        },
    }
    return api.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)["status"]["allowed"]


def test_the_permissions_table_covers_every_service_account_the_program_creates(admitted: Admission):
    declared = {
        (sa["metadata"]["namespace"], sa["metadata"]["name"]) for sa in admitted.of_kind("ServiceAccount")
    }
    documented = {(row.namespace, row.name) for row in documented_permissions()}
    assert declared == documented


@pytest.mark.parametrize(
    "permissions", documented_permissions(), ids=lambda row: f"{row.namespace}/{row.name}"
)
def test_each_service_account_may_do_what_the_table_says_and_no_more(
    admitted: Admission, api: Client, permissions: Permissions
):
    namespaces = [ns["metadata"]["name"] for ns in admitted.of_kind("Namespace")]
    # What every authenticated user may do (discovery, reviewing its own access): an account of the same
    # namespace that nothing is bound to.
    baseline = granted(api, f"system:serviceaccount:{permissions.namespace}:nobody", permissions.namespace)
    own = granted(api, permissions.user, permissions.namespace) - baseline
    assert own == permissions.may, f"{admitted.stack} {permissions.user}: granted {sorted(own)}"
    for namespace in namespaces:
        if namespace != permissions.namespace:
            assert granted(api, permissions.user, namespace) == baseline, f"{permissions.user} in {namespace}"
    for verb, group, resource in permissions.must_not:
        for namespace in (permissions.namespace, ""):
            assert not allowed(api, permissions.user, verb, group, resource, namespace), (
                f"{permissions.user} may {verb} {group}/{resource} in {namespace or 'all namespaces'}"
            )
