#!/usr/bin/env bash
# Once per Prefect server: the work pools, where GPU slots are counted, and the automation that marks silent
# GPU runs Crashed. Safe to run again (a changed GPUS or CRASH_AFTER_S takes effect).
# GPUS: how many GPUs the GPU pool's workers have in all (default 1).
# GPU_POOL_TYPE: the GPU pool's worker type: docker (default; its job template is deployments/docker-gpu.json,
#   prefect-docker 0.7.3's own, which has container_create_kwargs: the template a server without network access
#   falls back to lacks it, and the GPU request in prefect.yaml would be dropped without a word), kubernetes (its
#   job template is deployments/kubernetes-gpu.json: one nvidia.com/gpu per phase, the runs, data and cache
#   volumes), or process (no containers).
# GPU_POOL: the GPU pool's name (default semievol-gpu, the name deployments/prefect.yaml uses).
set -euo pipefail
GPUS=${GPUS:-1}
GPU_POOL=${GPU_POOL:-semievol-gpu}
HERE=$(cd "$(dirname "$0")" && pwd)
prefect work-pool inspect semievol-cpu >/dev/null 2>&1 || prefect work-pool create semievol-cpu --type process
if ! prefect work-pool inspect "$GPU_POOL" >/dev/null 2>&1; then
  case "${GPU_POOL_TYPE:-docker}" in
    kubernetes) prefect work-pool create "$GPU_POOL" --type kubernetes \
                  --base-job-template "$HERE/kubernetes-gpu.json" >/dev/null ;;
    docker) prefect work-pool create "$GPU_POOL" --type docker \
              --base-job-template "$HERE/docker-gpu.json" >/dev/null ;;
    *) prefect work-pool create "$GPU_POOL" --type "${GPU_POOL_TYPE:-docker}" >/dev/null ;;
  esac
fi
# GPU slots are counted where the runs are: the GPU pool starts at most GPUS flow runs at once (each worker's
# --limit caps its own machine). A run waiting in the pool's queue holds nothing, and a Crashed run frees its
# slot at once.
prefect work-pool set-concurrency-limit "$GPU_POOL" "$GPUS" >/dev/null
# GPU phases that run inside a round's own process (no gpu_deployment, on a machine with a GPU) take a slot of
# the `gpu` tag limit instead, for as long as they compute.
prefect concurrency-limit create gpu "$GPUS" >/dev/null
# A GPU run whose worker dies goes silent: this automation marks it Crashed after CRASH_AFTER_S seconds without
# a heartbeat (or, for a run that died before its first heartbeat, without leaving Pending/Running), and the
# round dispatches it again. It watches every run a round sends to the GPU pool (tag semievol-gpu-run): whole
# phases and shards. Workers must beat more often: PREFECT_FLOWS_HEARTBEAT_FREQUENCY (default 180 s) below
# CRASH_AFTER_S (default 600 s), e.g. 60 and 180.
for old in semievol-crashed-shards semievol-crashed-gpu-runs; do
  prefect --no-prompt automation delete "$old" >/dev/null 2>&1 || true
done
prefect automation create --from-json "$(cat <<JSON
{"name": "semievol-crashed-gpu-runs",
 "description": "Marks silent SemiEvol GPU runs Crashed, so the round dispatches them again",
 "trigger": {"type": "event", "posture": "Proactive", "threshold": 1, "within": ${CRASH_AFTER_S:-600},
             "after": ["prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.heartbeat"],
             "expect": ["prefect.flow-run.Running", "prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                        "prefect.flow-run.Failed", "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"],
             "match": {"prefect.resource.id": "prefect.flow-run.*"},
             "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.semievol-gpu-run"},
             "for_each": ["prefect.resource.id"]},
 "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
              "message": "silent for ${CRASH_AFTER_S:-600} s: its worker is gone"}]}
JSON
)" >/dev/null
echo "pool $GPU_POOL: $GPUS GPU slots; GPU runs silent for ${CRASH_AFTER_S:-600} s are marked Crashed"
