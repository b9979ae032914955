# syntax=docker/dockerfile:1.7
# mlstack-spark: the workflow's Spark ingest, driver and executors alike (infra/specs/spark.py). The ingest
# step runs `python -m workloads ingest --engine spark ...` as the driver; Spark starts each executor pod
# with `python -m workloads.data.spark_executor executor` (the command of the executor pod template), which
# replaces itself with the JVM of the executor on this image's own pyspark jars: driver and executors run
# one Spark release.
#
#   docker build -f workloads/images/spark.Dockerfile -t mlstack-spark:0.1.0 .
#
# Spark needs a Java 17+ runtime: Debian's, as the test machines run it. The final stage installs that
# runtime package only (no compiler or build tool); the Python side is the build stage's virtual
# environment, as in the other images.

FROM python:3.11.14-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workloads ./workloads
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir pip==26.3 \
 && /opt/venv/bin/pip install --no-cache-dir ".[storage,spark]" \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="mlstack-spark" \
      org.opencontainers.image.description="mlstack Spark ingest: driver and executors" \
      org.opencontainers.image.licenses="Apache-2.0"
# The one runtime package of the final stage; pinned to the Debian 12 update the tests ran on.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless=17.0.15+6-1~deb12u1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin mlstack
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    MLSTACK_CACHE_DIR=/home/mlstack/.cache/mlstack/shards
USER 10001
WORKDIR /home/mlstack
ENTRYPOINT ["python", "-m", "workloads"]
CMD ["ingest", "--help"]
