# syntax=docker/dockerfile:1.7
#
# clapsearch images. One Dockerfile, three targets (docker build --target NAME):
#
#   runtime  (the default: the last stage)  API, ingest worker and indexer CLI on ONNX Runtime +
#            FAISS (CPU), no torch; the default model inside; non-root; ~0.8 GB (estimate)
#   cuda     the same on an NVIDIA CUDA runtime base, with onnxruntime-gpu and faiss-gpu-cu12
#            (CLAPSEARCH_DEVICE=cuda); run with --gpus all / the compose `gpu` profile
#   train    the runtime plus torch (CPU wheel) and the training/conversion tools (clap-train)
#
#   docker build -t clapsearch:0.1.0 .
#   docker build --target cuda  -t clapsearch:0.1.0-cuda .
#   docker build --target train -t clapsearch:0.1.0-train .
#
# Dependencies come only from the locks in requirements/ (hash-pinned; regenerate with
# `bash requirements/compile.sh`). deploy/docker/install.sh holds the install steps; the test
# tests/deploy/test_install_and_run.py runs the same script in a fresh virtualenv.
# Base images are pinned by tag; pin them by digest (python:3.11-slim-bookworm@sha256:...) in a
# release pipeline for bit-for-bit rebuilds.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# CUDA 12: faiss-gpu-cu12 and onnxruntime-gpu 1.26 (requirements/gpu-constraints.txt) target it.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# builder: a virtualenv in /opt/venv with the locked runtime dependencies, then the package
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY deploy/docker/install.sh deploy/docker/install.sh
COPY requirements/ requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    sh deploy/docker/install.sh deps /opt/venv requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY indexer/ indexer/
COPY service/ service/
COPY training/ training/
RUN --mount=type=cache,target=/root/.cache/pip \
    sh deploy/docker/install.sh app /opt/venv /src

# ---------------------------------------------------------------------------------------------
# train: runtime + torch and the training extra, for clap-train (train / evaluate / export /
# convert-laion / convert-hf). Training code is in the package; mount data and runs at /work.
FROM ${PYTHON_IMAGE} AS train
WORKDIR /src
COPY deploy/docker/install.sh deploy/docker/install.sh
COPY requirements/ requirements/
COPY constraints.txt ./
# torch==2.13.0 (constraints.txt) as the CPU wheel from PyTorch's own index: ~200 MB and no CUDA
# libraries. For a CUDA training image drop --index-url: PyPI's Linux torch wheels bundle CUDA
# 12 (several GB), and base the stage on ${CUDA_IMAGE} instead.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu -c constraints.txt "torch==2.13.0"
RUN --mount=type=cache,target=/root/.cache/pip \
    sh deploy/docker/install.sh deps /opt/venv requirements/train.txt constraints.txt
COPY pyproject.toml README.md ./
COPY indexer/ indexer/
COPY service/ service/
COPY training/ training/
RUN --mount=type=cache,target=/root/.cache/pip \
    sh deploy/docker/install.sh app /opt/venv /src \
    && groupadd --system --gid 10001 clapsearch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/clapsearch --shell /usr/sbin/nologin clapsearch \
    && mkdir -p /var/lib/clapsearch/indexes /work \
    && chown -R 10001:10001 /var/lib/clapsearch /work
COPY models/clapsearch-sfx-v2/ /opt/clapsearch/models/clapsearch-sfx-v2/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CLAPSEARCH_HOME=/var/lib/clapsearch \
    CLAPSEARCH_INDEX_DIR=/var/lib/clapsearch/indexes \
    CLAPSEARCH_MODEL=/opt/clapsearch/models/clapsearch-sfx-v2
USER 10001:10001
WORKDIR /work
CMD ["clap-train", "--help"]

# ---------------------------------------------------------------------------------------------
# cuda-builder / cuda: the runtime on NVIDIA's CUDA + cuDNN runtime image (Ubuntu 24.04, Python
# 3.12). The host needs the NVIDIA driver and the NVIDIA Container Toolkit.
FROM ${CUDA_IMAGE} AS cuda-builder
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY deploy/docker/install.sh deploy/docker/install.sh
COPY requirements/ requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    PYTHON=python3.12 sh deploy/docker/install.sh deps /opt/venv requirements/gpu.txt
COPY pyproject.toml README.md ./
COPY indexer/ indexer/
COPY service/ service/
COPY training/ training/
# pip check would report the CPU builds (onnxruntime, faiss-cpu) that the GPU builds replace
RUN --mount=type=cache,target=/root/.cache/pip \
    PIP_CHECK=0 sh deploy/docker/install.sh app /opt/venv /src \
    && /opt/venv/bin/python -c "import faiss, onnxruntime; print('faiss', faiss.__version__, 'onnxruntime', onnxruntime.__version__)"

FROM ${CUDA_IMAGE} AS cuda
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 clapsearch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/clapsearch --shell /usr/sbin/nologin clapsearch \
    && mkdir -p /var/lib/clapsearch/indexes /library \
    && chown -R 10001:10001 /var/lib/clapsearch
COPY --from=cuda-builder /opt/venv /opt/venv
COPY models/clapsearch-sfx-v2/ /opt/clapsearch/models/clapsearch-sfx-v2/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CLAPSEARCH_HOME=/var/lib/clapsearch \
    CLAPSEARCH_INDEX_DIR=/var/lib/clapsearch/indexes \
    CLAPSEARCH_MODEL=/opt/clapsearch/models/clapsearch-sfx-v2 \
    CLAPSEARCH_DEVICE=cuda \
    CLAPSEARCH_FAISS_GPU=auto \
    CLAPSEARCH_HOST=0.0.0.0 \
    CLAPSEARCH_PORT=8000 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /var/lib/clapsearch
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CLAPSEARCH_PORT', '8000'), timeout=4)"]
CMD ["clapsearch-api", "serve"]

# ---------------------------------------------------------------------------------------------
# runtime (default): slim Debian + /opt/venv + the default model. No compilers, no torch.
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="clapsearch" \
      org.opencontainers.image.description="Audio search on CLAP: REST API, ingest worker and indexer CLI (ONNX Runtime + FAISS)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 clapsearch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/clapsearch --shell /usr/sbin/nologin clapsearch \
    && mkdir -p /var/lib/clapsearch/indexes /library \
    && chown -R 10001:10001 /var/lib/clapsearch
COPY --from=builder /opt/venv /opt/venv
# the shipped default model (66 MB), read-only for the service user
COPY models/clapsearch-sfx-v2/ /opt/clapsearch/models/clapsearch-sfx-v2/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CLAPSEARCH_HOME=/var/lib/clapsearch \
    CLAPSEARCH_INDEX_DIR=/var/lib/clapsearch/indexes \
    CLAPSEARCH_MODEL=/opt/clapsearch/models/clapsearch-sfx-v2 \
    CLAPSEARCH_HOST=0.0.0.0 \
    CLAPSEARCH_PORT=8000
USER 10001:10001
WORKDIR /var/lib/clapsearch
EXPOSE 8000
# liveness only (the process answers); readiness (/readyz: model and indexes loaded) is for
# load balancers and Kubernetes. The worker and migrate containers override or disable this.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CLAPSEARCH_PORT', '8000'), timeout=4)"]
# clapsearch-api serve (uvicorn, CLAPSEARCH_WORKERS processes) | clapsearch-api migrate |
# clapsearch-worker | indexer ingest /library ...
CMD ["clapsearch-api", "serve"]
