#!/usr/bin/env bash
# The CTR pipeline on the local platform, end to end, as one flow (examples/ctr/flow.yaml):
# generate data -> Spark features -> Horovod training -> register -> evaluate against production
# -> promote (the first version becomes production; a later, better one a 10% canary),
# then a prediction through the model's traffic-split router.
# Sets up the environment first (scripts/bootstrap; a no-op when it is up to date).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$root/scripts/bootstrap"
cd "$root"
export PATH="$root/.venv/bin:$PATH"

run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

run plinth flow graph -f examples/ctr/flow.yaml
run plinth flow run -f examples/ctr/flow.yaml
run plinth model versions ctr
run plinth model predict ctr -d @examples/ctr/request.json
run plinth model compare ctr
printf '\nThe model keeps serving; stop it with: .venv/bin/plinth model stop ctr\n'
printf 'For devices: examples/ctr/export_edge.sh exports it as TFLite and checks it without TensorFlow\n'
