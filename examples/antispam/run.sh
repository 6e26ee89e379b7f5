#!/usr/bin/env bash
# The anti-spam example on the local stack: generate comments, train the Keras text classifier,
# register it, serve it behind its router, and classify examples/antispam/request.json.
# Run it next to examples/ctr/run.sh: the two models are served side by side, each on its own port.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
scripts/bootstrap
export PATH="$PWD/.venv/bin:$PATH"
plinth job submit -f examples/antispam/generate.job.yaml --wait
plinth job submit -f examples/antispam/train.job.yaml --wait
plinth model register antispam --job antispam-train
version=$(plinth model versions antispam -o json | python -c 'import json, sys; print(json.load(sys.stdin)[-1]["version"])')
plinth model promote antispam "$version"
plinth model predict antispam -d @examples/antispam/request.json
