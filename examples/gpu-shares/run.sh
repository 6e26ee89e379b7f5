#!/usr/bin/env bash
# Two teams' GPU shares on the simulated 100-GPU platform whose scheduler is Volcano
# (stacks/Pulumi.platform-sim-volcano.yaml): ranking (48 GPUs deserved) fills the a100 pool while
# feed (32) is idle, then feed asks for 48. Volcano reclaims the GPUs ranking borrowed, and both
# teams end on their deserved shares. Starts a fresh simulated cluster and stops it at the end
# (the Pulumi state lives in a temporary folder); needs scripts/cluster-tools --with volcano.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$(scripts/cluster-tools --with volcano --bin-dir):$PWD/.venv/bin:$PATH"
state=$(mktemp -d)
export PULUMI_BACKEND_URL="file://$state" PULUMI_CONFIG_PASSPHRASE=plinth-sim PULUMI_SKIP_UPDATE_CHECK=true
trap 'plinth sim down >/dev/null; rm -rf "$state"' EXIT

plinth sim up --platform platform-sim-volcano --job-seconds 600  # jobs run ten minutes: none ends while the shares settle
for stack in platform-sim-volcano team-sim-ranking team-sim-feed; do
  pulumi stack select --create "$stack" >/dev/null
  pulumi up -s "$stack" --yes --skip-preview --non-interactive >/dev/null
  echo "pulumi up -s $stack: done"
done

submit() {  # STACK COUNT: COUNT jobs of 8 GPUs (one a100 node each), submitted at once
  for _ in $(seq "$2"); do plinth job submit -s "$1" -f examples/gpu-shares/train.job.yaml & done
  wait
}
shares() { python examples/gpu-shares/shares.py team-sim-ranking team-sim-feed; }

echo "--- ranking asks for 80 GPUs while feed is idle"
submit team-sim-ranking 10
sleep 20
shares
echo "--- feed asks for 48"
submit team-sim-feed 6
sleep 20
shares
