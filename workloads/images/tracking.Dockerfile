# syntax=docker/dockerfile:1.7
# mlstack-tracking: the MLflow tracking server the Pulumi program runs in mlstack-tracking
# (infra/specs/tracking.py); the Deployment supplies `mlflow server` and its flags.
#
#   docker build -f workloads/images/tracking.Dockerfile -t mlstack-tracking:0.1.0 .
#
# Our own image rather than a community chart (bitnami/mlflow, community-charts/mlflow): the server is
# the same mlflow release the workloads' clients pin (pyproject.toml's `tracking` extra, read below, so
# the version is written once), the Deployment is ours to hold to the platform's rules (non-root,
# read-only root filesystem, limits, Pod Security restricted, default-deny networking) like every other
# pod, and no chart's image, values schema or bundled database has to be trusted and tracked as well.
# The pins are pyproject.toml's `tracking-server` extra (mlflow from `tracking`, and psycopg 3, the
# PostgreSQL driver SQLAlchemy uses for the backend store's postgresql:// URI: a wheel with its own libpq,
# so the final stage needs no build tools or libpq package), read below so they are written once; the
# mlstack package itself is not installed.

FROM python:3.11.14-bookworm AS build
WORKDIR /src
COPY pyproject.toml ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir pip==26.3 \
 && python -c 'import tomllib; extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]; print("\n".join(r for name in ("tracking", "tracking-server") for r in extras[name] if not r.startswith("mlstack[")))' > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="mlstack-tracking" \
      org.opencontainers.image.description="mlstack MLflow tracking server" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin mlstack
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /home/mlstack
ENTRYPOINT ["mlflow"]
CMD ["server", "--help"]
