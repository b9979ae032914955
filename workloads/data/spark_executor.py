"""A Spark executor as Spark on Kubernetes starts one: the command of the executor pods that the ingest
step's driver creates (``python -m workloads.data.spark_executor executor``).

Spark's scheduler backend for Kubernetes describes each executor in its pod's environment
(``SPARK_DRIVER_URL``, ``SPARK_EXECUTOR_ID``, ``SPARK_EXECUTOR_CORES``, ``SPARK_EXECUTOR_MEMORY``,
``SPARK_APPLICATION_ID``, ``SPARK_EXECUTOR_POD_IP``, ``SPARK_EXECUTOR_POD_NAME``,
``SPARK_RESOURCE_PROFILE_ID``, the JVM options as ``SPARK_JAVA_OPT_<n>``) and appends the argument
``executor`` to the container's command; Spark's own images read these in their entry point script. This
module does the same for our image, where Spark is the ``pyspark`` package: it replaces itself with the
JVM running Spark's Kubernetes executor backend, on the classpath of the ``pyspark`` it is installed with
(the driver's own, so both sides run one Spark version).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
from collections.abc import Mapping, Sequence

BACKEND = "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
ROLE = "executor"  # the argument Spark appends to an executor container's command
REQUIRED = (
    "SPARK_DRIVER_URL",
    "SPARK_EXECUTOR_ID",
    "SPARK_EXECUTOR_CORES",
    "SPARK_EXECUTOR_MEMORY",
    "SPARK_APPLICATION_ID",
    "SPARK_EXECUTOR_POD_IP",
)
_JAVA_OPT = re.compile(r"^SPARK_JAVA_OPT_(\d+)$")


class ExecutorError(Exception):
    """The pod does not describe an executor; the message names what is missing."""


def spark_jars() -> pathlib.Path:
    """The jars of the installed ``pyspark`` (imported lazily: the driver image and ours carry it)."""
    import pyspark

    return pathlib.Path(pyspark.__file__).parent / "jars"


def command(env: Mapping[str, str], java: str, jars: pathlib.Path) -> list[str]:
    """The JVM command of the executor that ``env`` describes."""
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise ExecutorError(
            f"{', '.join(missing)} not set: this command runs in an executor pod that Spark on Kubernetes "
            "created, which sets them"
        )
    options = sorted((int(m[1]), value) for name, value in env.items() if (m := _JAVA_OPT.match(name)))
    memory = env["SPARK_EXECUTOR_MEMORY"]
    classpath = ":".join(p for p in (env.get("SPARK_CLASSPATH", ""), f"{jars}/*") if p)
    return [
        java,
        *(value for _, value in options),
        f"-Xms{memory}",
        f"-Xmx{memory}",
        "-cp", classpath,
        BACKEND,
        "--driver-url", env["SPARK_DRIVER_URL"],
        "--executor-id", env["SPARK_EXECUTOR_ID"],
        "--cores", env["SPARK_EXECUTOR_CORES"],
        "--app-id", env["SPARK_APPLICATION_ID"],
        "--hostname", env["SPARK_EXECUTOR_POD_IP"],
        "--resourceProfileId", env.get("SPARK_RESOURCE_PROFILE_ID", "0"),
        "--podName", env.get("SPARK_EXECUTOR_POD_NAME", ""),
    ]  # fmt: skip


def java_binary(env: Mapping[str, str]) -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on the PATH."""
    home = env.get("JAVA_HOME", "").strip()
    found = str(pathlib.Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not os.access(found, os.X_OK):
        raise ExecutorError("no Java runtime: set JAVA_HOME or put java on the PATH")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args != [ROLE]:
        print(f"usage: python -m workloads.data.spark_executor {ROLE}  (Spark starts it)", file=sys.stderr)
        return 2
    try:
        argv_java = command(os.environ, java_binary(os.environ), spark_jars())
    except ExecutorError as error:
        print(f"spark executor: error: {error}", file=sys.stderr)
        return 1
    os.execv(argv_java[0], argv_java)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
