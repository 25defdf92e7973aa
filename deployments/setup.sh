#!/usr/bin/env bash
# Once per Prefect server: the work pools and the concurrency limit that keeps one GPU phase per GPU.
# GPUS: how many GPUs the GPU pool's workers have in all (default 1).
set -euo pipefail
prefect work-pool inspect semievol-cpu >/dev/null 2>&1 || prefect work-pool create semievol-cpu --type process
if [ "${SKIP_GPU_POOL:-0}" != 1 ]; then
  prefect work-pool inspect semievol-gpu >/dev/null 2>&1 || prefect work-pool create semievol-gpu --type docker
fi
prefect concurrency-limit create gpu "${GPUS:-1}"
# A shard run whose worker dies goes silent: this automation marks it Crashed after CRASH_AFTER_S seconds
# without a heartbeat (or, for a run that died before its first heartbeat, without leaving Pending/Running),
# and the round dispatches that shard again. It watches only runs tagged semievol-shard. Workers must beat
# more often: PREFECT_FLOWS_HEARTBEAT_FREQUENCY (default 180 s) below CRASH_AFTER_S (default 600 s), e.g. 60
# and 180. Re-created on every call, so a new CRASH_AFTER_S takes effect.
prefect --no-prompt automation delete semievol-crashed-shards >/dev/null 2>&1 || true
prefect automation create --from-json "$(cat <<JSON
{"name": "semievol-crashed-shards",
 "description": "Marks semievol shard runs Crashed when they go silent, so the round dispatches them again",
 "trigger": {"type": "event", "posture": "Proactive", "threshold": 1, "within": ${CRASH_AFTER_S:-600},
             "after": ["prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.heartbeat"],
             "expect": ["prefect.flow-run.Running", "prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                        "prefect.flow-run.Failed", "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"],
             "match": {"prefect.resource.id": "prefect.flow-run.*"},
             "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.semievol-shard"},
             "for_each": ["prefect.resource.id"]},
 "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
              "message": "silent for ${CRASH_AFTER_S:-600} s: its worker is gone"}]}
JSON
)" >/dev/null
echo "automation semievol-crashed-shards: shard runs silent for ${CRASH_AFTER_S:-600} s are marked Crashed"
