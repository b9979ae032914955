"""A rehearsal of a WorkflowTemplate on this machine: the stand-in for the Argo controller and the
Kubeflow training operator, which cannot run here (no Kubernetes).

It takes the generated WorkflowTemplate and a Workflow that references it, and does what the controller
would, in the same order and with the same values, failing loudly wherever the template asks for
something this stand-in (or Argo) would not understand:

- arguments: the template's parameters and their defaults, overridden by the Workflow's; an argument the
  template does not declare, or a parameter left without a value, is an error;
- ``{{...}}`` substitution of ``workflow.*``, ``inputs.parameters.*``, ``item.*`` and
  ``tasks.<task>.outputs.parameters.*``; anything else left in a string is an error;
- the DAG in dependency order: ``depends`` expressions (``&&``, ``||``, ``!``, ``task.Result``),
  ``withParam`` fan-out, ``failFast: false``, the DAG's phase from its leaves' branches as Argo assesses
  it, and the ``onExit`` handler with ``workflow.status`` and ``workflow.failures``; ``continueOn``, which
  Argo refuses beside ``depends``, is refused here too;
- ``memoize``: a JSON file per cache stands in for its ConfigMap; a hit restores the outputs and skips
  the step; ``maxAge`` is honoured;
- container steps run as local processes with exactly the template's command, args and env: ``python``
  is this interpreter (the image's Python is this project's), and the pod's writable ``/tmp`` (an
  emptyDir) is a directory of the step's own, in the args, env and output paths alike;
- resource steps (a TFJob or PyTorchJob) run through the local launcher, which injects what the training
  operator would (``TF_CONFIG``, or ``RANK``/``WORLD_SIZE``/``MASTER_*``), one process per replica; the
  job's ``status.replicaStatuses`` is then what the operator would report, and the template's
  ``successCondition``/``failureCondition`` are evaluated on it (Argo's ``path op value`` form). Each pod
  has ports of its own; the replicas here share one loopback, so their ``--metrics-port`` is 0 (any free
  port), the one change made to a step's args.
- an elastic PyTorchJob (``elasticPolicy``): the ``PET_*`` variables the operator v1.9 would inject into
  its pods (:func:`operator_environment`) become the local launcher's elastic agents
  (:func:`local_agents`), which run the container's own command (a torchrun agent) with those settings
  and a rendezvous on the loopback; a lost agent the job went on without counts as not succeeded.

Trials run one after another (``parallelism`` only bounds them in the cluster; this machine has two
cores). What it proves is that the stages agree on every path, flag, file and parameter; what only a
real cluster shows (scheduling, RBAC, images, the operator's own reconciling) is the k3d job's
(.github/workflows/).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from workloads.core.errors import WorkloadError
from workloads.training import launcher
from workloads.training.launcher import LocalJob

_TAG = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_CONDITION = re.compile(r"^\s*([\w.]+)\s*(==|=|!=|>=|<=|>|<)\s*(\S+)\s*$")
POD_TMP = "/tmp"


class RehearsalError(AssertionError):
    """The template asks for something the controller would refuse or this stand-in cannot do."""


@dataclasses.dataclass
class Node:
    """One executed (or memoized, or skipped) template invocation."""

    name: str
    template: str
    phase: str  # Succeeded | Failed | Skipped | Omitted
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    memo_hit: bool = False
    message: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class Run:
    name: str
    phase: str
    nodes: list[Node]

    def node(self, name: str) -> Node:
        (found,) = [n for n in self.nodes if n.name == name]
        return found

    def trials(self) -> list[Node]:
        return [n for n in self.nodes if n.template == "trial"]


def substitute(text: str, values: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match[1]
        if name.startswith("="):
            raise RehearsalError(
                f"expression tag {{{{{name}}}}} in {text!r}: the rehearsal does not evaluate them"
            )
        if name not in values:
            raise RehearsalError(
                f"{{{{{name}}}}} in {text[:200]!r} has no value here (known: {sorted(values)})"
            )
        return values[name]

    return _TAG.sub(one, text)


def substitute_all(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return substitute(value, values)
    if isinstance(value, list):
        return [substitute_all(v, values) for v in value]
    if isinstance(value, dict):
        return {k: substitute_all(v, values) for k, v in value.items()}
    return value


def holds(condition: str, resource: Mapping[str, Any]) -> bool:
    """Argo's resource condition ``<json path> <op> <value>`` (comma-separated requirements, all must hold)."""
    for requirement in condition.split(","):
        match = _CONDITION.match(requirement)
        if not match:
            raise RehearsalError(f"condition {requirement!r} is not `<path> <op> <value>`")
        path, op, expected = match.groups()
        actual: Any = resource
        for part in path.split("."):
            actual = actual.get(part) if isinstance(actual, Mapping) else None
        if actual is None:
            return False
        if op in ("=", "=="):
            ok = str(actual) == expected
        elif op == "!=":
            ok = str(actual) != expected
        else:
            ok = _compare(float(actual), op, float(expected))
        if not ok:
            return False
    return True


def _compare(actual: float, op: str, expected: float) -> bool:
    return {
        ">": actual > expected,
        "<": actual < expected,
        ">=": actual >= expected,
        "<=": actual <= expected,
    }[op]


def depends_holds(expression: str, results: Mapping[str, Node]) -> bool:
    """Argo's enhanced depends logic over the finished tasks' phases."""

    def result(match: re.Match[str]) -> str:
        task, _, kind = match[0].partition(".")
        if task not in results:
            raise RehearsalError(f"depends {expression!r} names task {task!r}, which has not run")
        phase, children = results[task].phase, results[task].outputs.get("_children", "")
        ok = {
            "": phase in ("Succeeded", "Skipped"),
            "Succeeded": phase == "Succeeded",
            "Failed": phase == "Failed",
            "Errored": phase == "Error",
            "Skipped": phase == "Skipped",
            "Omitted": phase == "Omitted",
            "AnySucceeded": "Succeeded" in children.split(","),
            "AllFailed": bool(children) and set(children.split(",")) == {"Failed"},
        }
        if kind not in ok:
            raise RehearsalError(f"depends {expression!r}: unknown result .{kind}")
        return str(ok[kind])

    python = re.sub(r"[A-Za-z][\w-]*(\.[A-Za-z]+)?", result, expression)
    python = python.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    return bool(eval(python, {"__builtins__": {}}, {}))


class MemoCache:
    """The ConfigMaps of ``memoize.cache``: one JSON file each under ``directory``."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _file(self, cache: str) -> pathlib.Path:
        return self.directory / f"{cache}.json"

    def get(self, cache: str, key: str, max_age: str) -> dict[str, str] | None:
        entries = json.loads(self._file(cache).read_text()) if self._file(cache).exists() else {}
        entry = entries.get(key)
        if entry is None or time.time() - entry["created"] > _seconds(max_age):
            return None
        return entry["outputs"]

    def put(self, cache: str, key: str, outputs: dict[str, str]) -> None:
        if not re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", key):
            raise RehearsalError(f"memo key {key!r} is not a valid ConfigMap key")
        path = self._file(cache)
        entries = json.loads(path.read_text()) if path.exists() else {}
        entries[key] = {"outputs": outputs, "created": time.time()}
        path.write_text(json.dumps(entries, indent=1))


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    if not match:
        raise RehearsalError(f"maxAge {duration!r} is not <n>s, <n>m or <n>h")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


@dataclasses.dataclass
class Rehearsal:
    """Runs Workflows of ``template`` under ``workdir`` (logs, each step's /tmp, the memo caches)."""

    template: dict[str, Any]
    workdir: pathlib.Path
    env: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(os.environ))
    check_job: Callable[[dict[str, Any]], None] = lambda job: None  # e.g. schema validation
    step_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        self.memo = MemoCache(self.workdir / "memo")
        self.templates = {t["name"]: t for t in self.template["spec"]["templates"]}

    def submit(self, workflow: dict[str, Any]) -> Run:
        spec = workflow["spec"]
        if spec["workflowTemplateRef"]["name"] != self.template["metadata"]["name"]:
            raise RehearsalError(f"the Workflow references {spec['workflowTemplateRef']}, not this template")
        name = workflow["metadata"]["generateName"] + secrets.token_hex(3)[:5]
        self.globals = {"workflow.name": name, **self._parameters(spec)}
        self.run_dir = self.workdir / name
        nodes: list[Node] = []
        entry = self.template["spec"]["entrypoint"]
        phase = self._dag(self.templates[entry], nodes)
        failures = [
            {"displayName": n.name, "message": n.message, "templateName": n.template, "phase": n.phase}
            for n in nodes
            if n.phase in ("Failed", "Error")
        ]
        # Only the exit handler sees how the workflow ended.
        self.globals.update({"workflow.status": phase, "workflow.failures": json.dumps(failures)})
        if handler := self.template["spec"].get("onExit"):
            nodes.append(self._invoke(f"{name}.onExit", handler, {}, self.globals))
        return Run(name, phase, nodes)

    def _parameters(self, spec: Mapping[str, Any]) -> dict[str, str]:
        declared = {p["name"]: p.get("value") for p in self.template["spec"]["arguments"]["parameters"]}
        given = {p["name"]: p["value"] for p in spec.get("arguments", {}).get("parameters", [])}
        if unknown := set(given) - set(declared):
            raise RehearsalError(
                f"the Workflow gives parameters the template does not declare: {sorted(unknown)}"
            )
        values = {**declared, **given}
        if missing := [k for k, v in values.items() if v is None]:
            raise RehearsalError(f"parameters without a value: {missing}")
        return {f"workflow.parameters.{k}": str(v) for k, v in values.items()}

    def _dag(self, template: Mapping[str, Any], nodes: list[Node]) -> str:
        dag = template["dag"]
        results: dict[str, Node] = {}
        pending = list(dag["tasks"])
        failed = False
        while pending:
            ready = [t for t in pending if all(d in results for d in _task_names(t.get("depends", "")))]
            if not ready:
                raise RehearsalError(f"tasks {[t['name'] for t in pending]} depend on tasks that never run")
            task = ready[0]
            pending.remove(task)
            result = self._task(task, results, nodes)
            results[task["name"]] = result
            failed |= result.phase in ("Failed", "Error")
            if failed and dag.get("failFast", True):
                return "Failed"
        return dag_phase(dag["tasks"], results)

    def _task(self, task: Mapping[str, Any], results: dict[str, Node], nodes: list[Node]) -> Node:
        if unsupported := set(task) - {"name", "template", "depends", "withParam", "arguments"}:
            raise RehearsalError(f"task {task['name']}: the rehearsal does not support {sorted(unsupported)}")
        if task.get("depends") and not depends_holds(task["depends"], results):
            node = Node(task["name"], task["template"], "Omitted")
            nodes.append(node)
            return node
        values = {**self.globals, **_task_outputs(results)}
        if "withParam" not in task:
            node = self._invoke(task["name"], task["template"], task.get("arguments", {}), values)
            nodes.append(node)
            return node
        items = json.loads(substitute(task["withParam"], values))
        children = []
        for index, item in enumerate(items):
            item_values = {**values, **{f"item.{k}": str(v) for k, v in item.items()}}
            children.append(
                self._invoke(
                    f"{task['name']}({index})", task["template"], task.get("arguments", {}), item_values
                )
            )
        nodes.extend(children)
        phases = [c.phase for c in children]
        phase = "Failed" if "Failed" in phases else "Succeeded"
        return Node(task["name"], task["template"], phase, {"_children": ",".join(phases)})

    def _invoke(
        self, name: str, template_name: str, arguments: Mapping[str, Any], values: Mapping[str, str]
    ) -> Node:
        template = self.templates[template_name]
        declared = [p["name"] for p in template.get("inputs", {}).get("parameters", [])]
        given = {p["name"]: substitute(p["value"], values) for p in arguments.get("parameters", [])}
        if set(declared) != set(given):
            raise RehearsalError(f"{name}: template {template_name} takes {declared}, given {sorted(given)}")
        scope = {**self.globals, **{f"inputs.parameters.{k}": v for k, v in given.items()}}
        began = time.monotonic()
        memo = template.get("memoize")
        if memo:
            key = substitute(memo["key"], scope)
            cached = self.memo.get(memo["cache"]["configMap"]["name"], key, memo["maxAge"])
            if cached is not None:
                return Node(name, template_name, "Succeeded", cached, memo_hit=True)
        node = self._execute(name, template, scope)
        node.seconds = round(time.monotonic() - began, 1)
        if memo and node.phase == "Succeeded":
            self.memo.put(memo["cache"]["configMap"]["name"], key, node.outputs)
        return node

    def _execute(self, name: str, template: Mapping[str, Any], scope: Mapping[str, str]) -> Node:
        if "container" in template:
            return self._container(name, template, scope)
        if "resource" in template:
            return self._resource(name, template, scope)
        raise RehearsalError(f"{name}: the rehearsal runs container and resource templates only")

    def _step_dir(self, name: str) -> pathlib.Path:
        directory = self.run_dir / re.sub(r"[^\w.-]", "_", name)
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        return directory

    def _container(self, name: str, template: Mapping[str, Any], scope: Mapping[str, str]) -> Node:
        container = substitute_all(template["container"], scope)
        step = self._step_dir(name)
        pod_tmp = str(step / "tmp")
        argv = [_local(arg, pod_tmp) for arg in [*container["command"], *container.get("args", [])]]
        if argv[0] != "python":
            raise RehearsalError(f"{name}: command {argv[0]!r}: the rehearsal runs the image's `python` only")
        env = {**self.env, **{e["name"]: _local(e["value"], pod_tmp) for e in container.get("env", [])}}
        with (step / "log.txt").open("w") as log:
            done = subprocess.run(
                [sys.executable, *argv[1:]], env=env, stdout=log, stderr=subprocess.STDOUT,
                timeout=self.step_timeout_s, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            return Node(
                name, template["name"], "Failed", message=f"exit {done.returncode}: {_tail(step / 'log.txt')}"
            )
        outputs = {
            p["name"]: pathlib.Path(_local(p["valueFrom"]["path"], pod_tmp)).read_text()
            for p in template.get("outputs", {}).get("parameters", [])
        }
        return Node(name, template["name"], "Succeeded", outputs)

    def _resource(self, name: str, template: Mapping[str, Any], scope: Mapping[str, str]) -> Node:
        resource = substitute_all(template["resource"], scope)
        if resource["action"] != "create":
            raise RehearsalError(f"{name}: resource action {resource['action']!r} is not rehearsed")
        job = json.loads(resource["manifest"])
        self.check_job(job)
        status, why = self._operate(name, job)
        if holds(resource["failureCondition"], {"status": status}):
            return Node(name, template["name"], "Failed", message=f"failureCondition holds: {status} ({why})")
        if not holds(resource["successCondition"], {"status": status}):
            return Node(name, template["name"], "Failed", message=f"successCondition does not hold: {status}")
        return Node(name, template["name"], "Succeeded")

    def _operate(self, name: str, job: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        return operate(job, self._step_dir(name), self.env, self.step_timeout_s)


def operate(
    job: Mapping[str, Any], step: pathlib.Path, base_env: Mapping[str, str], timeout: float
) -> tuple[dict[str, Any], str]:
    """The training operator: every replica of ``job`` a process with the environment it would inject,
    ``step`` holding the pods' /tmp and logs; the job's status and, when it failed, why."""
    name = job["metadata"].get("name") or job["metadata"]["generateName"] + "rehearsal"
    specs_key, style = {
        "TFJob": ("tfReplicaSpecs", "tf_config"),
        "PyTorchJob": ("pytorchReplicaSpecs", "torchrun"),
    }[job["kind"]]
    specs = job["spec"][specs_key]
    order = ["Master", "Chief", "Worker"]
    if set(specs) - set(order):
        raise RehearsalError(f"{name}: replica types {sorted(specs)} are not rehearsed")
    types = [t for t in order if t in specs]
    counts = {t: int(specs[t]["replicas"]) for t in types}
    elastic = None
    if "elasticPolicy" in job["spec"]:
        if types != ["Worker"]:
            raise RehearsalError(f"{name}: an elastic PyTorchJob has Worker replicas only, not {types}")
        elastic = local_agents(operator_environment(job, name))
    (container,) = specs[types[0]]["template"]["spec"]["containers"]
    pod_tmp = str(step / "tmp")
    argv = _own_ports([_local(a, pod_tmp) for a in [*container["command"], *container.get("args", [])]])
    env = {e["name"]: _local(e["value"], pod_tmp) for e in container.get("env", [])}
    launched = LocalJob(
        [sys.executable, *argv[1:]], sum(counts.values()), env_style=style, env=env, base_env=base_env,
        max_restarts=int(job["spec"]["runPolicy"].get("backoffLimit", 0)), timeout=timeout,
        log_dir=step / "logs", echo=False, elastic=elastic,
    )  # fmt: skip
    try:
        launched.run()
        counts[types[-1]] -= len(launched.lost)  # elastic: agents the job finished without
        return {"replicaStatuses": {t: {"succeeded": c} for t, c in counts.items()}}, ""
    except WorkloadError as error:
        logs = sorted((step / "logs").glob("worker-*.log"))
        return {"replicaStatuses": {types[0]: {"failed": 1}}}, f"{error}: {_tail(logs[0]) if logs else ''}"


def operator_environment(job: Mapping[str, Any], name: str) -> dict[str, str]:
    """The ``PET_*`` variables the training operator v1.9 injects into every pod of the elastic PyTorchJob
    ``job`` named ``name`` (its pkg/controller.v1/pytorch/elastic.go and envvar.go, with the defaults of
    pytorch_defaults.go: an unset minimum or maximum is the other, or the Worker replicas)."""
    spec = job["spec"]
    policy = spec["elasticPolicy"]
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    low = policy.get("minReplicas", policy.get("maxReplicas", worker["replicas"]))
    high = policy.get("maxReplicas", low)
    port = policy.get("rdzvPort") or next(
        p["containerPort"]
        for c in worker["template"]["spec"]["containers"]
        if c["name"] == "pytorch"
        for p in c.get("ports", [])
        if p["name"] == "pytorchjob-port"
    )
    env = {
        "PET_RDZV_ENDPOINT": f"{policy.get('rdzvHost', f'{name}-worker-0')}:{port}",
        "PET_RDZV_BACKEND": policy.get("rdzvBackend", "c10d"),
        "PET_NNODES": f"{low}:{high}",
        # spec.nprocPerNode defaults to "auto" unless the deprecated elasticPolicy.nProcPerNode is set.
        "PET_NPROC_PER_NODE": str(spec.get("nprocPerNode", policy.get("nProcPerNode", "auto"))),
    }
    if "maxRestarts" in policy:
        env["PET_MAX_RESTARTS"] = str(policy["maxRestarts"])
    if "rdzvId" in policy:
        env["PET_RDZV_ID"] = policy["rdzvId"]
    if conf := policy.get("rdzvConf"):
        env["PET_RDZV_CONF"] = ",".join(f"{c['key']}={c['value']}" for c in conf)
    return env


def local_agents(pet: Mapping[str, str]) -> launcher.ElasticAgents:
    """The local launcher's elastic agents with the settings ``pet`` (:func:`operator_environment`) gives
    the pods; the rendezvous moves to the loopback. What the local launcher cannot be is refused."""
    if pet["PET_RDZV_BACKEND"] != launcher.RDZV_BACKEND:
        raise RehearsalError(f"rendezvous backend {pet['PET_RDZV_BACKEND']!r}: only c10d is rehearsed")
    if pet["PET_NPROC_PER_NODE"] != "1":
        raise RehearsalError(f"PET_NPROC_PER_NODE={pet['PET_NPROC_PER_NODE']}: local agents run one worker")
    low, _, high = pet["PET_NNODES"].partition(":")
    conf = dict(item.split("=", 1) for item in pet.get("PET_RDZV_CONF", "").split(",") if item)
    return launcher.ElasticAgents(
        min_nodes=int(low),
        max_nodes=int(high or low),
        max_restarts=int(pet.get("PET_MAX_RESTARTS", 0)),  # torchrun's defaults where the pods get none
        join_timeout=float(conf.get("join_timeout", 600)),
        run_id=pet.get("PET_RDZV_ID", "none"),
    )


def _local(value: str, pod_tmp: str) -> str:
    """A pod's /tmp path as the step's own directory here."""
    if value == POD_TMP or value.startswith(POD_TMP + "/"):
        return pod_tmp + value[len(POD_TMP) :]
    return value


def _own_ports(argv: list[str]) -> list[str]:
    """Each pod has its own ports; the replicas here share one loopback, so theirs are any free one."""
    return [
        ("0" if before == "--metrics-port" else arg) for before, arg in zip(["", *argv], argv, strict=False)
    ]


def dag_phase(tasks: list[Mapping[str, Any]], results: Mapping[str, Node]) -> str:
    """Argo's assessDAGPhase: each leaf task's branch phase decides. A completed task sets its branch's
    phase; an omitted one inherits its parents', a failure preferred. So a failure that a later task
    depends on (``trial.Failed``) does not fail the DAG once that task completes."""
    parents = {t["name"]: _task_names(t.get("depends", "")) for t in tasks}
    branch: dict[str, str] = {}
    for name, node in results.items():  # in the order they ran: parents first
        phase = node.phase
        if phase in ("Succeeded", "Failed", "Error"):
            branch[name] = phase
        else:
            inherited = [branch[p] for p in parents[name]]
            branch[name] = next((p for p in inherited if p in ("Failed", "Error")), "Succeeded")
    leaves = set(parents) - set().union(*parents.values())
    return "Failed" if any(branch[leaf] in ("Failed", "Error") for leaf in leaves) else "Succeeded"


def _task_names(expression: str) -> set[str]:
    return {m.split(".")[0] for m in re.findall(r"[A-Za-z][\w-]*(?:\.[A-Za-z]+)?", expression)}


def _task_outputs(results: Mapping[str, Node]) -> dict[str, str]:
    return {
        f"tasks.{task}.outputs.parameters.{k}": v
        for task, node in results.items()
        for k, v in node.outputs.items()
        if not k.startswith("_")
    }


def _tail(path: pathlib.Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
