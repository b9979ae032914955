# syntax=docker/dockerfile:1.7
# mlstack-workloads: the serving-side services (inference worker, streaming ingestion, load
# generator). The Deployment supplies the command, e.g. `args: ["infer-worker", "--bootstrap-servers", ...]`.
#
#   docker build -f workloads/images/workloads.Dockerfile -t mlstack-workloads:0.1.0 .

FROM python:3.11.14-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workloads ./workloads
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir pip==26.3 \
 && /opt/venv/bin/pip install --no-cache-dir ".[storage,serving]" \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="mlstack-workloads" \
      org.opencontainers.image.description="mlstack serving-side services" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin mlstack
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MLSTACK_CACHE_DIR=/home/mlstack/.cache/mlstack/shards
USER 10001
WORKDIR /home/mlstack
ENTRYPOINT ["python", "-m", "workloads"]
CMD ["--help"]
