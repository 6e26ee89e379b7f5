#!/usr/bin/env bash
# The CTR pipeline on the local platform, end to end, with the plinth commands a user types:
# generate data -> Spark features -> Horovod training -> register v(N) -> serve -> predict.
# Sets up the environment first (scripts/bootstrap; a no-op when it is up to date).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$root/scripts/bootstrap"
cd "$root"
export PATH="$root/.venv/bin:$PATH"

run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

run plinth stack show local -o yaml
run plinth job submit -f examples/ctr/generate.job.yaml --wait
run plinth job submit -f examples/ctr/preprocess.job.yaml --wait
run plinth job submit -f examples/ctr/train.job.yaml --wait
run plinth job ls
run plinth model register ctr --job ctr-train
run plinth model versions ctr
run plinth model serve ctr --replace
run plinth model predict ctr -d @examples/ctr/request.json
printf '\nThe model server keeps running; stop it with: .venv/bin/plinth model stop ctr\n'
