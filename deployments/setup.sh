#!/usr/bin/env bash
# Once per Prefect server: the work pools and the concurrency limit that keeps one GPU phase per GPU.
# GPUS: how many GPUs the GPU pool's workers have in all (default 1).
set -euo pipefail
prefect work-pool inspect semievol-cpu >/dev/null 2>&1 || prefect work-pool create semievol-cpu --type process
if [ "${SKIP_GPU_POOL:-0}" != 1 ]; then
  prefect work-pool inspect semievol-gpu >/dev/null 2>&1 || prefect work-pool create semievol-gpu --type docker
fi
prefect concurrency-limit create gpu "${GPUS:-1}"
