"""The executor pods' command: Spark's Kubernetes executor backend started as Spark's own images start it."""

from __future__ import annotations

import pathlib

import pytest

from workloads.data import spark_executor

POD = {
    "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@10.42.0.7:7078",
    "SPARK_EXECUTOR_ID": "3",
    "SPARK_EXECUTOR_CORES": "2",
    "SPARK_EXECUTOR_MEMORY": "1024m",
    "SPARK_APPLICATION_ID": "spark-4f2a",
    "SPARK_EXECUTOR_POD_IP": "10.42.1.9",
    "SPARK_EXECUTOR_POD_NAME": "mlstack-ingest-exec-3",
    "SPARK_RESOURCE_PROFILE_ID": "0",
    "SPARK_JAVA_OPT_1": "-Dspark.driver.port=7078",
    "SPARK_JAVA_OPT_0": "-Djava.net.preferIPv6Addresses=false",
    "SPARK_JAVA_OPT_10": "-Dspark.app.id=spark-4f2a",
}


def test_the_executor_runs_spark_s_kubernetes_backend_with_the_pod_s_settings():
    argv = spark_executor.command(POD, "/usr/bin/java", pathlib.Path("/opt/venv/pyspark/jars"))
    backend = argv.index(spark_executor.BACKEND)
    assert argv[:backend] == [
        "/usr/bin/java",
        "-Djava.net.preferIPv6Addresses=false",  # SPARK_JAVA_OPT_<n> in n's order, 10 after 1
        "-Dspark.driver.port=7078",
        "-Dspark.app.id=spark-4f2a",
        "-Xms1024m",
        "-Xmx1024m",
        "-cp",
        "/opt/venv/pyspark/jars/*",
    ]
    flags = dict(zip(argv[backend + 1 :: 2], argv[backend + 2 :: 2], strict=True))
    assert flags == {
        "--driver-url": POD["SPARK_DRIVER_URL"],
        "--executor-id": "3",
        "--cores": "2",
        "--app-id": "spark-4f2a",
        "--hostname": "10.42.1.9",
        "--resourceProfileId": "0",
        "--podName": "mlstack-ingest-exec-3",
    }


def test_a_pod_spark_did_not_make_is_refused_naming_what_is_missing():
    partial = {k: v for k, v in POD.items() if k not in ("SPARK_DRIVER_URL", "SPARK_EXECUTOR_POD_IP")}
    with pytest.raises(spark_executor.ExecutorError, match="SPARK_DRIVER_URL, SPARK_EXECUTOR_POD_IP not set"):
        spark_executor.command(partial, "/usr/bin/java", pathlib.Path("/jars"))


def test_the_command_takes_only_the_argument_spark_appends(capsys, monkeypatch):
    assert spark_executor.main(["driver"]) == 2
    for name in spark_executor.REQUIRED:
        monkeypatch.delenv(name, raising=False)
    assert spark_executor.main([spark_executor.ROLE]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("spark executor: error: SPARK_DRIVER_URL")


def test_the_jars_are_the_installed_pyspark_s():
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    assert any(p.name.startswith("spark-kubernetes_") for p in spark_executor.spark_jars().iterdir())
