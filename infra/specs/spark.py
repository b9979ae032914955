"""The workflow's ingest step on Spark (``workflow.spark``): the step's pod is Spark's driver, in client mode,
and Spark's own Kubernetes scheduler backend asks the API server for the executor pods.

Chosen over the Spark Operator's SparkApplication: no operator, chart or webhook to install, pin and keep
air-gapped; the step stays one Argo container whose exit is the ingest's (memoization and the digest output
work as for the one-process ingest); and driver and executors run one image (``mlstack-spark``) whose
``pyspark`` is the driver's, so their Spark versions cannot drift.

- **Driver**: ``python -m workloads ingest --engine spark --spark-master k8s://...`` with the
  ``--spark-conf`` of :func:`driver_conf`; its service account (:data:`DRIVER_ACCOUNT`) may create,
  watch and delete pods in the training namespace and nothing else beyond the workflow runner's rights.
  The executors name the driver's pod as their owner (``spark.kubernetes.driver.pod.name``), so they go
  with the step's pod whatever happens to the driver.
- **Executors**: pods from :func:`executor_template` (mounted from a ConfigMap): the platform's security
  context, the batch priority, the model store's access as the step has it, no service account token;
  Spark adds the image, the ``executor`` argument, its environment, resources and a local directory.
  Their command is ``python -m workloads.data.spark_executor`` (the image has no Spark entry point script).
- **Network**: driver and executors talk inside the training namespace, which its baseline policy
  allows; the executors reach the data as every pod there does.
"""

from __future__ import annotations

from typing import Any

import yaml

from infra.config import Images, ModelSource, SparkIngest
from infra.config.checks import amount
from infra.specs import model_store
from infra.specs.namespaces import TRAINING
from infra.specs.scheduling import BATCH_PRIORITY
from infra.specs.workload import (
    container_security_context,
    labels,
    metadata,
    pod_security_context,
    pull_policy,
    scratch_volumes,
    workload_env,
)
from workloads.data import spark_executor
from workloads.workflow import argo

COMPONENT = "workflow"
DRIVER_ACCOUNT = "spark-driver"
EXECUTOR_TEMPLATE = "spark-executor-template"
TEMPLATE_VOLUME = "spark-executor-template"
TEMPLATE_DIR = "/etc/mlstack/spark"
TEMPLATE_FILE = "executor-pod.yaml"
EXECUTOR_CONTAINER = "executor"
# In the pod: the API server's in-cluster Service (the driver uses its pod's service account token).
MASTER = "k8s://https://kubernetes.default.svc:443"
ROLE_LABEL = "mlstack.io/spark-role"
# The step container's own name and address, from the downward API; Kubernetes expands $(VAR) in args.
POD_NAME_VARIABLE = "SPARK_DRIVER_POD_NAME"
POD_IP_VARIABLE = "SPARK_DRIVER_POD_IP"
ARGO_GROUP = argo.API_VERSION.split("/")[0]
MIB = 1024 * 1024
# Of an executor pod's memory, the JVM heap's share; the rest is Spark's overhead, where the Python
# workers that write the shards live.
HEAP_SHARE = 0.5


def driver_conf(settings: SparkIngest, images: Images) -> dict[str, str]:
    """The ``--spark-conf`` pairs of the ingest step: where executors run, as what and how big."""
    image = images.spark()
    cores = str(int(amount(settings.executor_resources.cpu)))
    total = int(amount(settings.executor_resources.memory)) // MIB
    heap = int(total * HEAP_SHARE)
    return {
        "spark.submit.deployMode": "client",
        "spark.kubernetes.namespace": TRAINING,
        "spark.kubernetes.container.image": image,
        "spark.kubernetes.container.image.pullPolicy": pull_policy(image),
        "spark.kubernetes.executor.podTemplateFile": f"{TEMPLATE_DIR}/{TEMPLATE_FILE}",
        "spark.kubernetes.executor.podTemplateContainerName": EXECUTOR_CONTAINER,
        # Executors owned by the step's pod; the driver reached at the pod's address.
        "spark.kubernetes.driver.pod.name": f"$({POD_NAME_VARIABLE})",
        "spark.driver.host": f"$({POD_IP_VARIABLE})",
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.executor.instances": str(settings.executors),
        "spark.executor.cores": cores,
        "spark.kubernetes.executor.request.cores": cores,
        "spark.kubernetes.executor.limit.cores": cores,
        "spark.executor.memory": f"{heap}m",
        "spark.executor.memoryOverhead": f"{total - heap}m",
        # The executors' Spark settings come from the driver at registration: no ConfigMap to create; and
        # no Service or claims either, so none to clean up at the end (the account may not touch them).
        "spark.kubernetes.executor.disableConfigMap": "true",
        "spark.kubernetes.driver.service.deleteOnTermination": "false",
        "spark.kubernetes.driver.ownPersistentVolumeClaim": "false",
        "spark.kubernetes.driver.reusePersistentVolumeClaim": "false",
    }


def driver_args(settings: SparkIngest, images: Images) -> list[str]:
    """What the ingest step adds to ``python -m workloads ingest`` to run on Spark executors."""
    pairs = driver_conf(settings, images)
    return [
        "--engine",
        "spark",
        "--spark-master",
        MASTER,
        "--spark-conf",
        *(f"{k}={v}" for k, v in pairs.items()),
    ]


def driver_env() -> list[dict[str, Any]]:
    """The step container's name and address (``spark.kubernetes.driver.pod.name``, ``spark.driver.host``)."""
    return [
        {"name": POD_NAME_VARIABLE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": POD_IP_VARIABLE, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]


def template_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """The executor pod template's ConfigMap as a volume of the step, and its mount."""
    volume = {"name": TEMPLATE_VOLUME, "configMap": {"name": EXECUTOR_TEMPLATE}}
    return volume, {"name": TEMPLATE_VOLUME, "mountPath": TEMPLATE_DIR, "readOnly": True}


def executor_template(source: ModelSource) -> dict[str, Any]:
    """The pod Spark starts each executor from (it adds image, args, env, resources, local dirs)."""
    volumes, mounts = scratch_volumes()
    store_volumes, store_mounts = model_store.writer_volumes(source)
    container = {
        "name": EXECUTOR_CONTAINER,
        "command": ["python", "-m", spark_executor.__name__],
        "env": workload_env() + model_store.env(source),
        "securityContext": container_security_context(),
        "volumeMounts": mounts + store_mounts,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {**labels("spark-executor", COMPONENT), ROLE_LABEL: "executor"}},
        "spec": {
            "automountServiceAccountToken": False,
            "priorityClassName": BATCH_PRIORITY.name,
            "securityContext": pod_security_context(),
            "containers": [container],
            "volumes": volumes + store_volumes,
        },
    }


def driver_rules() -> list[dict[str, Any]]:
    """What Spark's scheduler backend does with its executors (create them, follow them, delete them), and
    what Argo's executor in the step's pod does: report the step's outputs."""
    return [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["create", "get", "list", "watch", "delete", "deletecollection"],
        },
        {"apiGroups": [ARGO_GROUP], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
    ]


def objects(source: ModelSource) -> list[dict[str, Any]]:
    """The driver's account and its Role, and the executor pod template."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(DRIVER_ACCOUNT, TRAINING, COMPONENT),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(DRIVER_ACCOUNT, TRAINING, COMPONENT),
            "rules": driver_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(DRIVER_ACCOUNT, TRAINING, COMPONENT),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DRIVER_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": DRIVER_ACCOUNT, "namespace": TRAINING}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(EXECUTOR_TEMPLATE, TRAINING, COMPONENT),
            "data": {TEMPLATE_FILE: yaml.safe_dump(executor_template(source), sort_keys=False)},
        },
    ]
