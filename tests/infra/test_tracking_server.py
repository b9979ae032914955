"""The MLflow tracking server as the program declares it for each example stack (mocked run): its objects
and their security, its password, its network, the tracking URI the workflow passes on, and the
``tracking`` setting (off: nothing of it at all; wrong: one line naming the key)."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest

from infra import config
from infra.config import ConfigError, ModelSource, parse
from infra.specs import model_store, namespaces, ports, tracking, versions
from infra.specs.workload import NON_ROOT_UID, labels
from tests.infra import workflows
from tests.infra.pods import containers, pod_templates
from tests.infra.program import ProgramRun, run_program, stack_settings
from tests.infra.test_argo import named, selects
from workloads.core.storage import S3_CREDENTIALS_DIR_ENV

pytestmark = pytest.mark.xdist_group(name="infra-program")

SERVER_POD = labels(tracking.SERVER, "tracking")
DATABASE_POD = labels(tracking.DATABASE, "tracking")
STORE_EGRESS = {"aws-example": {("cidr:0.0.0.0/0", ports.HTTPS)}, "baremetal-example": set()}


def in_tracking(run: ProgramRun) -> list[dict[str, Any]]:
    return [o for o in run.kubernetes_objects() if o["metadata"].get("namespace") == namespaces.TRACKING]


def workload(run: ProgramRun, kind: str, name: str) -> dict[str, Any]:
    return named(run, kind, namespaces.TRACKING, name)


def container_of(obj: dict[str, Any]) -> dict[str, Any]:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return container


def stack_config(stack: str, **changes: Any) -> dict[str, Any]:
    values = {k.split(":", 1)[1]: v for k, v in stack_settings(stack).items() if k.startswith("mlstack:")}
    return {**copy.deepcopy(values), **changes}


# -- objects and their security ------------------------------------------------------------------------


def test_the_server_and_its_database_run_in_a_restricted_namespace_with_its_budget(run: ProgramRun):
    (namespace,) = [
        n for n in run.objects_of_kind("Namespace") if n["metadata"]["name"] == namespaces.TRACKING
    ]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    kinds = {(o["kind"], o["metadata"]["name"]) for o in in_tracking(run)}
    assert {
        ("Deployment", tracking.SERVER),
        ("Service", tracking.SERVER),
        ("StatefulSet", tracking.DATABASE),
        ("Service", tracking.DATABASE),
        ("Secret", tracking.PASSWORD_SECRET),
        ("ResourceQuota", "workload-budget"),
        ("LimitRange", "container-defaults"),
    } <= kinds


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", tracking.SERVER), ("StatefulSet", tracking.DATABASE)]
)
def test_each_pod_is_non_root_read_only_limited_and_probed(run: ProgramRun, kind: str, name: str):
    obj = workload(run, kind, name)
    pod = obj["spec"]["template"]["spec"]
    container = container_of(obj)
    assert (
        pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == NON_ROOT_UID
    )
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == name
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"] == container["resources"]["requests"]
    assert {"cpu", "memory"} == set(container["resources"]["limits"])
    assert "readinessProbe" in container and "livenessProbe" in container


def test_postgres_is_the_pinned_official_image_with_its_claim_and_writable_scratch(run: ProgramRun):
    database = workload(run, "StatefulSet", tracking.DATABASE)
    container = container_of(database)
    assert container["image"] == versions.POSTGRES_IMAGE
    assert container["image"].startswith("postgres:") and "@sha256:" in container["image"]
    volumes = {v["name"]: v for v in database["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/var/run/postgresql"]] and "emptyDir" in volumes[mounts["/tmp"]]
    claim = workload(run, "PersistentVolumeClaim", tracking.DATABASE_CLAIM)
    data = volumes[mounts[tracking.POSTGRES_DATA]]
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert (
        claim["spec"]["resources"]["requests"]["storage"]
        == parse(stack_config(run.stack)).tracking.database_storage
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PGDATA"].startswith(f"{tracking.POSTGRES_DATA}/")


def test_the_server_is_our_image_serving_artifacts_into_the_model_store(run: ProgramRun):
    server = workload(run, "Deployment", tracking.SERVER)
    container = container_of(server)
    parsed = parse(stack_config(run.stack))
    assert container["image"] == parsed.images.tracking()
    assert container["command"] == ["mlflow", "server"]
    args = container["args"]
    assert "--serve-artifacts" in args
    destination = args[args.index("--artifacts-destination") + 1]
    assert destination.startswith(parsed.serving.model_source.base.rstrip("/") + "/")
    (service_port,) = workload(run, "Service", tracking.SERVER)["spec"]["ports"]
    assert service_port["port"] == ports.MLFLOW == container["ports"][0]["containerPort"]


# -- the password --------------------------------------------------------------------------------------


def test_the_database_password_is_generated_and_only_in_its_secret(run: ProgramRun):
    (secret,) = [
        r
        for r in run.resources
        if r.kind == "Secret" and r.inputs["metadata"]["name"] == tracking.PASSWORD_SECRET
    ]
    assert "stringData" in secret.secret_inputs
    password = secret.inputs["stringData"][tracking.PASSWORD_KEY]
    assert password.startswith("fake-password-"), "the mocked RandomPassword's result"
    elsewhere = [r.name for r in run.resources if r is not secret and password in str(r.inputs)]
    assert not elsewhere, f"the password reached {elsewhere}"
    assert not any(password in str(value) for value, _ in run.exports.values())


def secret_file(template: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    """The secret volume ``container`` reads the file ``path`` from (the one mounted at its directory)."""
    directory = str(pathlib.PurePath(path).parent)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount.get("readOnly") is True, path
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
    return volume["secret"]


def test_the_password_reaches_both_sides_as_files_never_as_an_argument_or_variable(run: ProgramRun):
    password_file = f"{tracking.PASSWORD_DIR}/{tracking.PASSWORD_KEY}"
    expected = {
        "secretName": tracking.PASSWORD_SECRET,
        "items": [{"key": tracking.PASSWORD_KEY, "path": tracking.PASSWORD_KEY}],
        "defaultMode": 0o440,
    }
    database = workload(run, "StatefulSet", tracking.DATABASE)
    env = {e["name"]: e.get("value") for e in container_of(database)["env"]}
    assert env["POSTGRES_PASSWORD_FILE"] == password_file and "POSTGRES_PASSWORD" not in env
    assert secret_file(database["spec"]["template"], container_of(database), password_file) == expected
    server = workload(run, "Deployment", tracking.SERVER)
    template = server["spec"]["template"]
    (init,) = template["spec"]["initContainers"]
    assert secret_file(template, init, password_file) == expected
    assert f"cat {password_file}" in init["command"][-1]
    for container in (init, container_of(server), container_of(database)):
        assert not any("valueFrom" in e for e in container.get("env", [])), container["name"]
    env = {e["name"]: e.get("value") for e in container_of(server)["env"]}
    assert env["PGPASSFILE"] == tracking.PGPASS_FILE
    args = container_of(server)["args"]
    backend = args[args.index("--backend-store-uri") + 1]
    assert backend.removeprefix("postgresql://").split("@")[0] == tracking.DATABASE_USER, backend
    (credentials,) = [v for v in template["spec"]["volumes"] if v["name"] == tracking.CREDENTIALS_VOLUME]
    assert credentials["emptyDir"]["medium"] == "Memory", "the written credentials stay off the node's disk"


def test_the_credential_files_are_what_libpq_and_boto3_read(tmp_path: pathlib.Path):
    """The init container's script, run on stand-in secret files: libpq's password file (host, port,
    database, user, password; owner-only) and boto3's shared-credentials file."""
    import configparser
    import subprocess

    source = ModelSource(kind="s3", base="s3://models/x", credentials_secret="s3")
    script = tracking.credentials_script(source)
    secrets = {
        tracking.PASSWORD_DIR: {tracking.PASSWORD_KEY: "Abc123"},
        model_store.CREDENTIALS_DIR: {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cret"},
    }
    script = f"{S3_CREDENTIALS_DIR_ENV}={model_store.CREDENTIALS_DIR}\n{script}"
    for directory, files in secrets.items():
        script = script.replace(directory, str(tmp_path / directory.strip("/")))
        for name, value in files.items():
            (tmp_path / directory.strip("/")).mkdir(parents=True, exist_ok=True)
            (tmp_path / directory.strip("/") / name).write_text(value)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["/bin/sh", "-c", script.replace(tracking.CREDENTIALS_DIR, str(out))], check=True)
    pgpass = out / pathlib.PurePath(tracking.PGPASS_FILE).name
    assert pgpass.read_text() == f"{tracking.DATABASE_HOST}:{ports.POSTGRES}:mlflow:mlflow:Abc123\n"
    assert pgpass.stat().st_mode & 0o077 == 0, "libpq ignores a password file others may read"
    parser = configparser.ConfigParser()
    parser.read(out / pathlib.PurePath(tracking.AWS_CREDENTIALS_FILE).name)
    assert dict(parser["default"]) == {"aws_access_key_id": "AKID", "aws_secret_access_key": "s3cret"}


# -- the network ---------------------------------------------------------------------------------------


def peers(run: ProgramRun, namespace: str, pod: dict[str, str], direction: str) -> set[tuple[str, int]]:
    """(peer, port) that the policies of ``namespace`` selecting ``pod`` allow in ``direction``: a peer is
    ``ns:<name>``, ``ns:<name>/<pod name>``, ``pod:<name>`` (same namespace) or ``cidr:<block>``."""
    key = "to" if direction == "egress" else "from"
    allowed = set()
    for policy in run.objects_of_kind("NetworkPolicy"):
        if policy["metadata"]["namespace"] != namespace or not selects(policy["spec"]["podSelector"], pod):
            continue
        for rule in policy["spec"].get(direction, []):
            for peer in rule.get(key, []):
                pod_name = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                if "ipBlock" in peer:
                    where = f"cidr:{peer['ipBlock']['cidr']}"
                elif "namespaceSelector" in peer:
                    ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    where = f"ns:{ns}/{pod_name}" if pod_name else f"ns:{ns}"
                else:
                    where = f"pod:{pod_name}"
                allowed.update((where, port["port"]) for port in rule["ports"])
    return allowed


def test_the_server_admits_exactly_the_training_workflow_and_serving_namespaces(run: ProgramRun):
    assert peers(run, namespaces.TRACKING, SERVER_POD, "ingress") == {
        (f"ns:{namespaces.TRAINING}", ports.MLFLOW),
        (f"ns:{namespaces.SERVING}", ports.MLFLOW),
    }
    assert namespaces.TRAINING == workflows.argo.NAMESPACE, (
        "the workflow's steps run in the training namespace"
    )


def test_postgres_admits_only_the_server_and_reaches_nothing_but_dns(run: ProgramRun):
    assert peers(run, namespaces.TRACKING, DATABASE_POD, "ingress") == {
        (f"pod:{tracking.SERVER}", ports.POSTGRES)
    }
    assert {port for _, port in peers(run, namespaces.TRACKING, DATABASE_POD, "egress")} == {ports.DNS}


def test_the_server_reaches_only_postgres_and_the_model_store(run: ProgramRun):
    egress = peers(run, namespaces.TRACKING, SERVER_POD, "egress")
    dns = {peer for peer in egress if peer[1] == ports.DNS}
    assert egress - dns == {(f"pod:{tracking.DATABASE}", ports.POSTGRES)} | STORE_EGRESS[run.stack]


@pytest.mark.parametrize("client", [namespaces.TRAINING, namespaces.SERVING])
def test_the_client_namespaces_may_reach_the_server_port(run: ProgramRun, client: str):
    policy = named(run, "NetworkPolicy", client, "allow-mlflow")
    assert policy["spec"]["egress"] == [
        {
            "to": [namespaces.namespace_peer(namespaces.TRACKING, tracking.selector(tracking.SERVER))],
            "ports": namespaces.tcp(ports.MLFLOW),
        }
    ]


# -- the tracking URI the workflow passes on ------------------------------------------------------------


def select_args(run: ProgramRun) -> list[list[str]]:
    return [
        template["spec"]["containers"][0]["args"]
        for obj in run.objects_of_kind("WorkflowTemplate")
        for step, template in workflows.step_pods(obj)
        if step == "select"
    ]


def trial_env(run: ProgramRun) -> list[list[dict[str, Any]]]:
    objects = run.kubernetes_objects()
    return [
        container.get("env", [])
        for _, owner, template in pod_templates(objects)
        if owner["kind"] in ("TFJob", "PyTorchJob")
        for container in containers(template)
    ]


def test_the_selection_and_every_trial_record_to_the_server(run: ProgramRun):
    url = f"http://{tracking.SERVER}.{namespaces.TRACKING}.svc.cluster.local:{ports.MLFLOW}"
    assert url == tracking.URL
    selections = select_args(run)
    assert len(selections) == 2
    for args in selections:
        assert args[args.index("--tracking-uri") + 1] == url
    trials = trial_env(run)
    assert len(trials) == 2
    for env in trials:
        assert {"name": "MLFLOW_TRACKING_URI", "value": url} in env


@pytest.fixture(scope="module")
def untracked(ansible_project: pathlib.Path) -> ProgramRun:
    run, error, _ = run_program(
        "baremetal-example",
        {"mlstack:ansibleDir": str(ansible_project), "mlstack:tracking": {"enabled": False}},
    )
    assert error is None, error
    return run


def test_tracking_off_declares_nothing_of_it_and_passes_no_uri(untracked: ProgramRun):
    assert not in_tracking(untracked)
    assert namespaces.TRACKING not in {n["metadata"]["name"] for n in untracked.objects_of_kind("Namespace")}
    assert not [r.name for r in untracked.resources if "tracking" in r.name or "mlflow" in r.name]
    assert not [
        p for p in untracked.objects_of_kind("NetworkPolicy") if p["metadata"]["name"] == "allow-mlflow"
    ]
    selections = select_args(untracked)
    assert selections and not any("--tracking-uri" in args for args in selections)
    trials = trial_env(untracked)
    assert trials and not any(e["name"] == "MLFLOW_TRACKING_URI" for env in trials for e in env)


# -- the store kinds -----------------------------------------------------------------------------------


def server_spec(source: ModelSource) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    items = tracking.objects(config.Tracking(), config.Images("registry.example", "1.0"), source, "secret")
    (deployment,) = [o for o in items if o["kind"] == "Deployment"]
    return deployment, items


def test_beside_hdfs_the_artifacts_get_a_claim_of_their_own_and_the_server_is_recreated():
    deployment, items = server_spec(ModelSource(kind="hdfs", base=""))
    (claim,) = [o for o in items if o["metadata"]["name"] == tracking.ARTIFACTS_CLAIM]
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["resources"]["requests"]["storage"] == config.Tracking().artifact_storage
    args = container_of(deployment)["args"]
    assert args[args.index("--artifacts-destination") + 1] == tracking.ARTIFACTS_MOUNT
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [o for o in items if o["metadata"]["name"] == "allow-model-store"]


def test_an_s3_endpoint_opens_its_own_port_from_the_server_only():
    source = ModelSource(
        kind="s3", base="s3://models/x", s3_endpoint="http://minio.example:9000", credentials_secret="s3"
    )
    deployment, items = server_spec(source)
    (store,) = [o for o in items if o["metadata"]["name"] == "allow-model-store"]
    assert selects(store["spec"]["podSelector"], SERVER_POD) and not selects(
        store["spec"]["podSelector"], DATABASE_POD
    )
    assert store["spec"]["egress"][0]["ports"] == namespaces.tcp(9000)
    env = container_of(deployment)["env"]
    assert {"name": "MLFLOW_S3_ENDPOINT_URL", "value": "http://minio.example:9000"} in env
    assert {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": tracking.AWS_CREDENTIALS_FILE} in env
    template = deployment["spec"]["template"]
    (init,) = template["spec"]["initContainers"]
    key_file = f"{model_store.CREDENTIALS_DIR}/AWS_ACCESS_KEY_ID"
    assert secret_file(template, init, key_file) == {"secretName": "s3", "defaultMode": 0o440}
    assert {"name": S3_CREDENTIALS_DIR_ENV, "value": model_store.CREDENTIALS_DIR} in init["env"]
    assert f'cat "${{{S3_CREDENTIALS_DIR_ENV}}}/AWS_ACCESS_KEY_ID"' in init["command"][-1]
    claims = [o["metadata"]["name"] for o in items if o["kind"] == "PersistentVolumeClaim"]
    assert claims == [tracking.DATABASE_CLAIM], "the artifacts go to the bucket, not a claim"


# -- the setting ---------------------------------------------------------------------------------------


def test_tracking_is_on_by_default_and_sized_by_the_setting():
    values = stack_config("baremetal-example")
    values.pop("tracking", None)
    assert parse(values).tracking == config.Tracking()
    values["tracking"] = {
        "serverResources": {"memory": "2Gi"},
        "databaseStorage": "50Gi",
        "storageClass": "fast",
    }
    parsed = parse(values).tracking
    assert parsed.server_resources == config.Resources(
        cpu=config.Tracking().server_resources.cpu, memory="2Gi"
    )
    assert (parsed.database_storage, parsed.storage_class, parsed.enabled) == ("50Gi", "fast", True)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (["on"], "mlstack:tracking: expected an object, got ['on'] (list)"),
        ({"enabled": "yes"}, "mlstack:tracking.enabled: expected true or false, got 'yes' (str)"),
        ({"enable": False}, "mlstack:tracking.enable: unknown setting; did you mean 'enabled'?"),
        (
            {"databaseStorage": "lots"},
            "mlstack:tracking.databaseStorage: 'lots' is not a Kubernetes quantity",
        ),
        ({"artifactStorage": "0"}, "mlstack:tracking.artifactStorage: '0' must be larger than 0"),
        ({"serverResources": {"cpu": "x"}}, "mlstack:tracking.serverResources.cpu: 'x' is not a Kubernetes"),
        ({"storageClass": "Fast_SSD"}, "mlstack:tracking.storageClass: 'Fast_SSD' must be a DNS label"),
        (
            {"serverResources": {"cpu": "2"}},
            "mlstack:namespaceBudgets.tracking.quota.cpu: 4 cannot hold the MLflow server during a rollout and "
            "its database",
        ),
    ],
)
def test_a_bad_tracking_setting_is_one_line_naming_the_key(setting: Any, message: str):
    with pytest.raises(ConfigError) as raised:
        parse(stack_config("baremetal-example", tracking=setting))
    assert str(raised.value).startswith(message), raised.value
    assert "\n" not in str(raised.value)


def test_a_quota_that_holds_nothing_of_tracking_is_fine_when_tracking_is_off():
    values = stack_config(
        "baremetal-example",
        tracking={"enabled": False, "serverResources": {"cpu": "64"}},
        namespaceBudgets={"tracking": {"quota": {"cpu": "1"}}},
    )
    assert parse(values).tracking.enabled is False
