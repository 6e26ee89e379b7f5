"""GPUs each team's Volcano Queue deserves, holds and waits for, on the teams' cluster.

    python examples/gpu-shares/shares.py team-sim-ranking team-sim-feed

HELD counts the GPUs of the team's pods Volcano has bound to a node, WAITING those of its pods
no node was given (pods being evicted count in neither).
"""

from __future__ import annotations

import sys

from platform_cli.kube import KubeClient, Resource
from platform_cli.output import print_table
from platform_cli.spec.stack import load_stack

GPU = "nvidia.com/gpu"
QUEUE = Resource("scheduling.volcano.sh/v1beta1", "Queue")


def gpus(pod: dict) -> int:
    return sum(int(c["resources"].get("requests", {}).get(GPU, 0)) for c in pod["spec"]["containers"])


def main(stacks: list[str]) -> None:
    rows = []
    for name in stacks:
        stack = load_stack(name)
        team = stack.config.team
        kube = KubeClient.for_stack(stack)
        queue = kube.get(QUEUE, None, team.name) or {}
        pods = [p for p in kube.list(Resource("v1", "Pod"), team.namespace_name) if not p["metadata"].get("deletionTimestamp")]
        held = sum(gpus(p) for p in pods if p["spec"].get("nodeName"))
        waiting = sum(gpus(p) for p in pods if not p["spec"].get("nodeName"))
        rows.append([team.name, queue.get("spec", {}).get("deserved", {}).get(GPU, "-"), held, waiting])
    print_table(["TEAM", "DESERVED", "HELD", "WAITING"], rows)


if __name__ == "__main__":
    main(sys.argv[1:])
