"""Volcano's scheduler configuration, derived from the platform stack: one home for what the
platform stack gives Volcano's Helm chart (infra/components/scheduler.py) and what the simulated
cluster runs vc-scheduler with (platform_cli/sim/volcano.py), so the sim proves the
configuration a real cluster gets.

What it makes Volcano do with the stack's promises:
- each team's Queue guarantees its `gpuShare` (the Queue's `deserved`, set by the team stack):
  the `capacity` plugin reads `deserved`; Volcano's default `proportion` plugin ignores it and
  cannot run beside `capacity`;
- a team may borrow idle GPUs beyond its share, and the `reclaim` action takes them back (evicts
  borrowed pods, lowest priority first) when the owner's jobs wait;
- within a team, the `preempt` action evicts lower-priority pods for higher-priority ones, so
  plinth-preemptible work goes first (the `priority` plugin ranks jobs by their PriorityClass);
- a job whose pods form a gang (minAvailable) is placed whole or not at all (`gang`).

The tiers are upstream's capacity-plugin configuration (docs/user-guide/how_to_use_capacity_plugin.md
of volcano-sh/volcano v1.15.1) with the `preempt` action added. `gang` and `drf` keep
`enablePreemptable: false` as upstream does: with it on, a running single-pod job (one ready
pod, minAvailable 1) could never be preempted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from platform_cli.spec.stack import SchedulerConfig

ACTIONS = ("enqueue", "allocate", "preempt", "reclaim", "backfill")
# The chart key whose text replaces the chart's volcano-scheduler.conf (volcano chart 1.15.1:
# templates/scheduler.yaml reads .Values.custom.scheduler_config_override).
CHART_CONFIG_KEY = ("custom", "scheduler_config_override")


def scheduler_configuration(scheduler: SchedulerConfig) -> dict[str, Any]:
    """vc-scheduler's configuration (its volcano-scheduler.conf) for the stack's scheduler."""
    if scheduler.kind != "volcano":
        raise ValueError(f"scheduler kind {scheduler.kind!r} has no Volcano configuration")
    return {
        "actions": ", ".join(ACTIONS),
        "tiers": [
            {"plugins": [
                {"name": "priority"},
                {"name": "gang", "enablePreemptable": False},
                {"name": "conformance"},
            ]},
            {"plugins": [
                {"name": "drf", "enablePreemptable": False},
                {"name": "predicates"},
                {"name": "capacity"},
                {"name": "nodeorder"},
                {"name": "binpack"},
            ]},
        ],
    }


def scheduler_configuration_text(scheduler: SchedulerConfig) -> str:
    import yaml

    return yaml.safe_dump(scheduler_configuration(scheduler), sort_keys=False)


def chart_values(scheduler: SchedulerConfig) -> dict[str, Any]:
    """The Volcano chart's values: its scheduler runs the configuration above."""
    section, key = CHART_CONFIG_KEY
    return {section: {key: scheduler_configuration_text(scheduler)}}

