"""Volcano's scheduler configuration as the platform stack gives it to the chart (and the sim
to vc-scheduler): what makes each team's gpuShare, borrowing and priority order real."""

from __future__ import annotations

import pytest
import yaml

from platform_cli.spec import volcano
from platform_cli.spec.stack import SchedulerConfig, load_stack
from tests.unit.infra_support import render_example


def plugins(config: dict) -> list[str]:
    return [plugin["name"] for tier in config["tiers"] for plugin in tier["plugins"]]


@pytest.fixture(scope="module")
def prod_scheduler() -> SchedulerConfig:
    return load_stack("platform-prod").config.platform.scheduler


def test_queues_guarantee_deserved_gpus_lend_and_reclaim_them_and_preempt_by_priority(prod_scheduler) -> None:
    config = volcano.scheduler_configuration(prod_scheduler)
    # reclaim takes borrowed GPUs back for a queue below its deserved share; preempt evicts
    # lower-priority pods within a queue; enqueue, allocate and backfill as Volcano's default.
    assert config["actions"] == "enqueue, allocate, preempt, reclaim, backfill"
    names = plugins(config)
    # capacity reads each Queue's deserved; proportion ignores it and cannot run beside it.
    assert "capacity" in names and "proportion" not in names
    # gang keeps a job's pods together; priority ranks jobs by their PriorityClass.
    assert {"gang", "priority", "predicates"} <= set(names)
    assert len(names) == len(set(names))


def test_priority_and_gang_decide_before_capacity_as_upstream_configures_them(prod_scheduler) -> None:
    first, second = volcano.scheduler_configuration(prod_scheduler)["tiers"]
    assert [p["name"] for p in first["plugins"]] == ["priority", "gang", "conformance"]
    assert [p["name"] for p in second["plugins"]] == ["drf", "predicates", "capacity", "nodeorder", "binpack"]
    # With gang's preemptable check on, a running one-pod job (minAvailable 1) could never be
    # preempted or reclaimed; the gang is still kept when pods are placed.
    assert {p["name"]: p.get("enablePreemptable") for p in first["plugins"] + second["plugins"]}["gang"] is False


def test_the_chart_gets_the_configuration_as_its_scheduler_config_override(prod_scheduler) -> None:
    values = volcano.chart_values(prod_scheduler)
    assert list(values) == ["custom"] and list(values["custom"]) == ["scheduler_config_override"]
    assert yaml.safe_load(values["custom"]["scheduler_config_override"]) == volcano.scheduler_configuration(prod_scheduler)


def test_platform_prod_installs_volcano_with_that_configuration() -> None:
    rendering = render_example("platform-prod")
    release = next(r for r in rendering.releases() if r["name"] == "volcano")
    override = release["values"]["custom"]["scheduler_config_override"]
    assert yaml.safe_load(override) == volcano.scheduler_configuration(load_stack("platform-prod").config.platform.scheduler)


def test_a_kueue_platform_has_no_volcano_configuration() -> None:
    with pytest.raises(ValueError, match="kueue"):
        volcano.scheduler_configuration(SchedulerConfig(kind="kueue"))
