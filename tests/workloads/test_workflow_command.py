"""`python -m workloads workflow`: the Workflow it renders for a grid, the content keys that memoize the
trials, its refusals (before anything is created), and submitting through the Argo server's API or a
kubeconfig's Kubernetes API.

Neither server can run here (no Kubernetes): ``RecordingServer`` is a double of their create endpoints,
an HTTP server that records each request and answers as they do (the created object, or an error body).
Where the real APIs are exercised: the k3d job in .github/workflows/ (README, test matrix).
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator

import pytest
import yaml

from tests.workloads.support import run_workloads
from tests.workloads.test_storage_errors import error_line
from workloads.workflow import argo
from workloads.workflow.search import Grid, Trial


class RecordingServer(http.server.ThreadingHTTPServer):
    """Double of the Argo server's and the Kubernetes API's create endpoint (see the module docstring)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[dict] = []
        self.status = status
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server: RecordingServer = self.server  # type: ignore[assignment]
        server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        workflow = body.get("workflow", body)
        if server.status == 200:
            answer = {**workflow, "metadata": {**workflow["metadata"], "name": "train-select-serve-abcde"}}
        else:
            answer = {"code": 7, "message": "workflows.argoproj.io is forbidden"}
        data = json.dumps(answer).encode()
        self.send_response(server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    running = RecordingServer()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()


def rendered(*flags: str) -> dict:
    result = run_workloads("workflow", *flags, timeout=120)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def arguments(workflow: dict) -> dict[str, str]:
    return {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}


def test_the_workflow_names_the_frameworks_template_and_carries_the_grid_as_items():
    workflow = rendered("--models", "plain,dropout", "--learning-rates", "0.001,0.003", "--parallelism", "1")
    assert workflow["kind"] == "Workflow" and workflow["metadata"]["namespace"] == argo.NAMESPACE
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "train-select-serve-tensorflow"}
    assert workflow["spec"]["parallelism"] == 1
    values = arguments(workflow)
    items = json.loads(values["grid"])
    assert [(i["model"], i["learning-rate"]) for i in items] == [
        ("plain", "0.001"), ("plain", "0.003"), ("dropout", "0.001"), ("dropout", "0.003"),
    ]  # fmt: skip
    assert all(set(i) == set(argo.ITEM_FIELDS) and all(isinstance(v, str) for v in i.values()) for i in items)
    assert len({i["key"] for i in items}) == 4 and values["min-trials"] == "1"
    assert set(values) <= set(argo.PARAMETERS)  # only parameters the template declares


def test_overrides_are_passed_only_when_given():
    values = arguments(
        rendered("--models", "plain", "--dataset", "hdfs://nn:8020/d", "--runs", "s3://b/runs")
    )
    assert values["dataset"] == "hdfs://nn:8020/d" and values["runs"] == "s3://b/runs"
    assert "model-store" not in values and "serving-url" not in values and "source" not in values


def test_a_points_key_is_its_content_and_changing_one_point_changes_only_its_key():
    def keys(rates):
        return [
            p.key
            for p in argo.Submission("tensorflow", Grid(("plain",), rates, (64,)), 2, 0, 2, 1, 2).points()
        ]

    assert keys((0.1, 0.2)) == keys((0.1, 0.2))
    first, second = keys((0.1, 0.2)), keys((0.1, 0.3))
    assert first[0] == second[0] and first[1] != second[1]
    point = argo.Point("tensorflow", Trial("plain", 0.1, 64), 2, 0, 2)
    assert point.key != argo.Point("tensorflow", Trial("plain", 0.1, 64), 3, 0, 2).key  # epochs
    assert point.key != argo.Point("pytorch", Trial("plain", 0.1, 64), 2, 0, 2).key  # framework


def test_pytorch_trials_are_elastic_between_the_min_and_the_workers_per_trial():
    def item(*flags):
        base = ("--framework", "pytorch", "--models", "plain", "--workers-per-trial", "4")
        return json.loads(arguments(rendered(*base, *flags))["grid"])[0]

    fixed = item()
    assert (fixed["workers"], fixed["min-workers"], fixed["max-restarts"]) == ("4", "4", "3")
    elastic = item("--min-workers-per-trial", "2", "--max-restarts", "5")
    assert (elastic["workers"], elastic["min-workers"], elastic["max-restarts"]) == ("4", "2", "5")
    assert elastic["key"] == fixed["key"], "how a trial rides out lost workers is not what it trains"
    assert item("--workers-per-trial", "1")["min-workers"] == "1", "one elastic worker is a job"


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (("--models", "plain,resnet9000"), "--models"),
        (("--learning-rates", ""), "--learning-rates"),
        (("--batch-sizes", "65", "--workers-per-trial", "2"), "--batch-sizes"),
        (("--framework", "pytorch", "--min-workers-per-trial", "3"), "--min-workers-per-trial"),
        (("--min-workers-per-trial", "1"), "--min-workers-per-trial"),
        (("--framework", "pytorch", "--min-workers-per-trial", "-1"), "--min-workers-per-trial"),
        (("--framework", "pytorch", "--max-restarts", "-1"), "--max-restarts"),
        (("--models", "plain", "--min-trials", "3"), "--min-trials"),
        (("--argo-server", "http://a", "--kubeconfig", "k"), "--argo-server"),
    ],
)
def test_a_bad_grid_is_refused_naming_the_flag_before_anything_is_rendered(flags, field):
    result = run_workloads("workflow", *flags, timeout=120)
    line = error_line(result, code=2)
    assert field in line and not result.stdout


def test_a_source_that_does_not_exist_is_refused_naming_the_flag():
    missing = "memory://no-such-idx"  # each process has its own, empty, in-memory store
    line = error_line(run_workloads("workflow", "--source", missing, timeout=120))
    assert "--source" in line and missing in line
    assert run_workloads("workflow", "--source", missing, "--skip-source-check", timeout=120).returncode == 0


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--source", "file:///tmp/idx"),
        ("--dataset", "data/shards"),
        ("--runs", "/tmp/runs"),
        ("--model-store", "models"),
        ("--serving-url", "tf-serving:8501"),
    ],
)
def test_a_path_on_this_machine_is_refused_for_the_pods_that_would_read_it(flag, value):
    """The workflow's pods see none of the submitting machine's files: refused before anything renders."""
    result = run_workloads("workflow", flag, value, "--skip-source-check", timeout=120)
    line = error_line(result, code=2)
    assert flag in line and value in line and not result.stdout, line


def test_a_claims_mount_path_is_a_model_store_the_steps_can_write():
    assert arguments(rendered("--model-store", "/models"))["model-store"] == "/models"


def test_submitting_to_the_argo_server_posts_the_workflow_with_the_token(server, tmp_path):
    token = tmp_path / "token"
    token.write_text("Bearer s3cr3t\n")
    result = run_workloads(
        "workflow", "--models", "plain", "--argo-server", server.url, "--token-file", str(token), timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "train-select-serve-abcde"
    (request,) = server.requests
    assert request["path"] == f"/api/v1/workflows/{argo.NAMESPACE}" and request["auth"] == "Bearer s3cr3t"
    assert (
        request["body"]["workflow"]["spec"]["workflowTemplateRef"]["name"] == "train-select-serve-tensorflow"
    )
    assert "s3cr3t" not in result.stderr + result.stdout


def test_a_refusal_from_the_server_is_one_line_with_what_to_check(server):
    server.status = 403
    line = error_line(
        run_workloads("workflow", "--models", "plain", "--argo-server", server.url, timeout=120)
    )
    assert "403" in line and "forbidden" in line and "token" in line


def test_an_unreachable_server_is_one_line_naming_it():
    line = error_line(run_workloads("workflow", "--argo-server", "http://127.0.0.1:9", timeout=120))
    assert f"http://127.0.0.1:9/api/v1/workflows/{argo.NAMESPACE}" in line and "cannot reach" in line


def kubeconfig(tmp_path, server_url: str, user: dict) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server_url}}],
        "users": [{"name": "me", "user": user}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "me"}}],
        "current-context": "lab",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_submitting_with_a_kubeconfig_creates_the_workflow_through_the_kubernetes_api(server, tmp_path):
    path = kubeconfig(tmp_path, server.url, {"token": "abc"})
    result = run_workloads(
        "workflow", "--models", "plain", "--namespace", "ml", "--kubeconfig", path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    (request,) = server.requests
    assert request["path"] == "/apis/argoproj.io/v1alpha1/namespaces/ml/workflows"
    assert request["auth"] == "Bearer abc" and request["body"]["kind"] == "Workflow"


def test_a_kubeconfig_whose_credentials_come_from_a_plugin_is_refused_saying_what_to_do(server, tmp_path):
    path = kubeconfig(tmp_path, server.url, {"exec": {"command": "aws", "apiVersion": "v1"}})
    line = error_line(run_workloads("workflow", "--kubeconfig", path, timeout=120))
    assert path in line and "plugin" in line and "kubectl create -f" in line and not server.requests


def test_a_kubeconfig_client_certificate_is_loaded_not_ignored(server, tmp_path):
    bad = base64.b64encode(b"not a certificate").decode()
    path = kubeconfig(tmp_path, server.url, {"client-certificate-data": bad, "client-key-data": bad})
    result = run_workloads("workflow", "--kubeconfig", path, timeout=120)
    assert result.returncode != 0 and not server.requests and "Traceback" not in result.stderr
