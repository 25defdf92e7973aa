#!/usr/bin/env bash
# Installs the automations of deployments/on-promotion.yaml: when a continuous evolution promotes an adapter
# (or refuses to), Prefect POSTs the event as JSON to PROMOTION_WEBHOOK_URL. Safe to run again (the Webhook block
# and the automations are replaced).
# PROMOTION_WEBHOOK_URL: where to POST (required), e.g. a serving system's "load this adapter" endpoint.
# EVOLUTION: the evolution name to watch (default: every evolution).
# PYTHON: a Python with Prefect installed (default: python, e.g. .venv/bin/python after `source .venv/bin/activate`).
set -euo pipefail
: "${PROMOTION_WEBHOOK_URL:?set PROMOTION_WEBHOOK_URL to the URL the promotion events are POSTed to}"
here=$(cd "$(dirname "$0")" && pwd)
evolution=${EVOLUTION:-*}
if ! [[ "$evolution" =~ ^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$ ]]; then
  echo "EVOLUTION must be an evolution name or *, not '$evolution'" >&2
  exit 2
fi
block_id=$("${PYTHON:-python}" - <<'PY'
import os
from prefect.blocks.webhook import Webhook
hook = Webhook(url=os.environ["PROMOTION_WEBHOOK_URL"], method="POST",
               headers={"Content-Type": "application/json"})
print(hook.save("semievol-promotion-webhook", overwrite=True))
PY
)
for name in semievol-on-promotion semievol-on-refused-promotion; do
  prefect --no-prompt automation delete "$name" >/dev/null 2>&1 || true
done
spec=$(mktemp --suffix=.yaml)
trap 'rm -f "$spec"' EXIT
sed -e "s/WEBHOOK_BLOCK_ID/$block_id/" -e "s/EVOLUTION_NAME/$evolution/" "$here/on-promotion.yaml" > "$spec"
prefect automation create --from-file "$spec" >/dev/null
echo "automations semievol-on-promotion, semievol-on-refused-promotion: events of evolution '$evolution' go to the webhook"
