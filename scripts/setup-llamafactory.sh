#!/usr/bin/env bash
# Creates .venv-llamafactory at the repository root: LLaMA-Factory's own environment (its pins on transformers,
# peft and datasets conflict with the inference stack). The trainer runs its llamafactory-cli.
# Idempotent: re-runs only when this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
venv=.venv-llamafactory
stamp=$venv/.semievol-setup
want=$(sha256sum scripts/setup-llamafactory.sh | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up $venv (first time: a few minutes)" >&2
[ -x $venv/bin/python ] || "$PY" -m venv $venv
pip() { $venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
# torch pinned to the CPU build in the same resolve: otherwise torchvision pulls a CUDA torch of several GB.
pip install torch==2.13.0 llamafactory==0.9.5 torchdata==0.11.0
# PyPI's torchvision is a CUDA build whose operators fail to register beside the CPU torch and break
# `import transformers`; text fine-tuning does not use it.
pip uninstall -y torchvision
# One LLaMA-Factory module imports torchaudio at the top; PyPI's torchaudio extension links CUDA libraries.
# torchaudio imports without its compiled extension (it then only lacks the extension's ops, which text
# training never calls), so the extension files are removed.
site=$($venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$site"/torchaudio/lib/*.so
DISABLE_VERSION_CHECK=0 $venv/bin/llamafactory-cli version > /dev/null
echo "$want" > "$stamp"
