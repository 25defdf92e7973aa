#!/usr/bin/env bash
# The demo command: sets up .venv from nothing if needed, then runs a small round on the shipped FPB sample.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/semievol demo "$@"
