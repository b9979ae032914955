# syntax=docker/dockerfile:1.7
# mlstack-training: what TFJob and PyTorchJob workers run (`python -m workloads train ...`).
#
#   CPU:  docker build -f workloads/images/training.Dockerfile -t mlstack-training:0.1.0 .
#   CUDA: docker build -f workloads/images/training.Dockerfile --build-arg VARIANT=cuda \
#           -t mlstack-training:0.1.0-cuda .
#
# The CUDA variant adds TensorFlow's CUDA wheels from PyPI (tensorflow[and-cuda]); the NVIDIA
# driver comes from the node through the NVIDIA container toolkit. PyPI's torch wheel carries its
# own CUDA runtime, so both variants run PyTorch on CPU or GPU. Everything installs from PyPI.

FROM python:3.11.14-bookworm AS build
ARG VARIANT=cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workloads ./workloads
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir pip==26.3 \
 && /opt/venv/bin/pip install --no-cache-dir ".[storage,tf,torch]" \
 && if [ "${VARIANT}" = "cuda" ]; then /opt/venv/bin/pip install --no-cache-dir "tensorflow[and-cuda]==2.21.0"; fi \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# The final stage has no compiler, no pip cache and no source tree: the virtual environment only.
FROM python:3.11.14-slim-bookworm
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="mlstack-training" \
      org.opencontainers.image.description="mlstack training workers (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin mlstack
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MLSTACK_CACHE_DIR=/home/mlstack/.cache/mlstack/shards
USER 10001
WORKDIR /home/mlstack
# Training worker metrics (--metrics-port).
EXPOSE 9410
ENTRYPOINT ["python", "-m", "workloads"]
CMD ["train", "--help"]
