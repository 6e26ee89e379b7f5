#!/usr/bin/env bash
# The CTR model for devices (端预测): export the newest registered version of `ctr` (run
# examples/ctr/run.sh first) as TFLite, float32 and float16, then check the float16 export as a
# device runs it: LiteRT and Plinth's numpy hashing, in a process that never imports TensorFlow.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH"

run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

version=$(plinth model versions ctr -o json | python -c 'import json, sys; print(json.load(sys.stdin)[-1]["version"])')
run plinth model export ctr "$version" --format tflite
run plinth model export ctr "$version" --format tflite --quantize float16
run python -m platform_cli.edge.device ".plinth/local/exports/ctr/v$version/tflite-float16" --rows examples/ctr/request.json
