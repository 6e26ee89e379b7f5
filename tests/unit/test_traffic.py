"""Gray-release transitions and the traffic-split math, as pure functions."""

from __future__ import annotations


import pytest

from platform_cli.errors import PlinthError
from platform_cli.serving import traffic
from platform_cli.serving.metrics import LatencyHistogram, VersionMetrics
from platform_cli.spec.stack import AutoRollbackConfig, GrayReleaseConfig

OPEN = GrayReleaseConfig()
GATED = GrayReleaseConfig(require_approval=True, canary_max=10)


def serving(production: int = 2) -> traffic.TrafficState:
    return traffic.promote(traffic.TrafficState(model="ctr"), production, None, OPEN)


def test_the_first_version_is_production_with_all_traffic():
    state = serving(2)
    assert (state.production, state.canary, state.weights, state.generation) == (2, None, {2: 100}, 1)
    assert state.history[-1].action == "promote"


def test_promote_splits_traffic_and_every_change_is_recorded():
    state = traffic.promote(serving(2), 3, 10, GATED)
    assert state.weights == {2: 90, 3: 10} and state.canary == 3 and state.generation == 2
    assert [e.action for e in state.history] == ["promote", "promote"]
    assert traffic.promote(serving(2), 3, None, GATED).weights == {2: 90, 3: 10}  # default: canaryMax


@pytest.mark.parametrize(("version", "percent", "message"), [
    (3, 0, "canary: 0 is not a canary share: a canary takes 1-99 percent of traffic"),
    (3, 100, "canary: 100 is not a canary share: a canary takes 1-99 percent of traffic (a full rollout gives a version all of it)"),
    (3, 20, "version 3 of ctr needs approval before it takes more than 10% of traffic; run plinth model approve ctr 3"),
])
def test_promote_refusals(version, percent, message):
    with pytest.raises(PlinthError) as error:
        traffic.promote(serving(2), version, percent, GATED)
    assert str(error.value).startswith(message)


def test_one_canary_share_rule_for_the_stack_a_flow_step_and_the_release_commands(project, tmp_path):
    """1-99 percent: refused in the same words wherever the share comes from, each naming its
    own field (a flow's promote step is refused when the flow is loaded, before anything runs)."""
    from platform_cli.spec.flow import load_flow
    from platform_cli.spec.stack import canary_share_problem, load_stack

    problem = canary_share_problem(100)
    assert problem == "100 is not a canary share: a canary takes 1-99 percent of traffic (a full rollout gives a version all of it)"
    assert canary_share_problem(1) is None and canary_share_problem(99) is None and canary_share_problem(0) is not None
    canary = traffic.promote(serving(2), 3, 10, OPEN)
    for refused, expected in [
        (lambda: traffic.promote(serving(2), 3, 100, OPEN), f"canary: {problem}"),
        (lambda: traffic.rollout(canary, 100, OPEN), f"weight: {problem}"),
        (lambda: traffic.from_aliases("ctr", {"production": 2, "canary": 3}, 100, OPEN), f"canary: {problem}"),
    ]:
        with pytest.raises(PlinthError) as caught:
            refused()
        assert str(caught.value) == expected

    (project / "stacks" / "Pulumi.gray.yaml").write_text("config:\n  plinth:serving: {grayRelease: {canaryMax: 100}}\n")
    with pytest.raises(PlinthError) as caught:
        load_stack("gray")
    assert str(caught.value) == f"stacks/Pulumi.gray.yaml: plinth:serving.grayRelease.canaryMax: {problem}"

    flow = tmp_path / "flow.yaml"
    flow.write_text("kind: flow\nname: demo\nnodes:\n  release:\n    steps:\n      promote: {promote: {model: ctr, version: '3', canary: 100}}\n")
    with pytest.raises(PlinthError) as caught:
        load_flow(flow)
    assert str(caught.value) == f"{flow}: nodes.release.steps.promote.promote.canary: {problem}"


def test_the_split_the_aliases_stand_for():
    assert traffic.from_aliases("ctr", {"production": 2}, None, OPEN).weights == {2: 100}
    assert traffic.from_aliases("ctr", {"production": 2, "canary": 3}, None, GATED).weights == {2: 90, 3: 10}  # canaryMax
    assert traffic.from_aliases("ctr", {"production": 2, "canary": 3}, 30, GATED).weights == {2: 70, 3: 30}
    with pytest.raises(PlinthError, match="model 'ctr' has no production version; promote one first: plinth model promote ctr VERSION"):
        traffic.from_aliases("ctr", {"canary": 3}, None, OPEN)


def test_promoting_production_again_changes_nothing_unless_a_canary_is_live():
    state = serving(2)
    assert traffic.promote(state, 2, 10, GATED) is state
    with pytest.raises(PlinthError, match="version 2 of ctr is already production; roll the canary"):
        traffic.promote(traffic.promote(state, 3, 10, GATED), 2, 10, GATED)


def test_a_second_canary_is_refused_until_the_first_is_resolved():
    state = traffic.promote(serving(2), 3, 10, OPEN)
    with pytest.raises(PlinthError, match="version 3 of ctr is already the canary; roll it out"):
        traffic.promote(state, 4, 10, OPEN)
    assert traffic.promote(state, 3, 30, OPEN).weights == {2: 70, 3: 30}  # re-promoting moves its share


def test_rollout_beyond_canary_max_needs_approval_then_goes_through():
    state = traffic.promote(serving(2), 3, 10, GATED)
    for percent in (50, None):
        with pytest.raises(PlinthError, match="run plinth model approve ctr 3"):
            traffic.rollout(state, percent, GATED)
    assert traffic.rollout(state, 10, GATED).weights == {2: 90, 3: 10}  # within canaryMax: allowed

    approved = traffic.approve(state, None)
    assert approved.approved == [3] and approved.weights == state.weights
    assert traffic.approve(approved, 3) is approved  # approving twice changes nothing
    assert traffic.rollout(approved, 50, GATED).weights == {2: 50, 3: 50}
    full = traffic.rollout(approved, None, GATED)
    assert (full.production, full.canary, full.previous, full.weights) == (3, None, 2, {3: 100})


def test_approve_and_rollout_need_a_canary():
    with pytest.raises(PlinthError, match="ctr has no canary to approve"):
        traffic.approve(serving(2), None)
    with pytest.raises(PlinthError, match="ctr has no canary to roll out"):
        traffic.rollout(serving(2), 50, OPEN)
    with pytest.raises(PlinthError, match="version 4 of ctr is not the canary"):
        traffic.approve(traffic.promote(serving(2), 3, 10, OPEN), 4)


def test_rollback_drops_the_canary_then_returns_to_the_previous_production():
    canary = traffic.promote(serving(2), 3, 10, OPEN)
    back = traffic.rollback(traffic.approve(canary, 3))
    assert (back.production, back.canary, back.weights) == (2, None, {2: 100})
    assert back.approved == []  # rolled back: approval must be given again
    with pytest.raises(PlinthError, match="run plinth model approve ctr 3"):
        traffic.promote(back, 3, 50, GATED)

    full = traffic.rollout(canary, None, OPEN)
    undone = traffic.rollback(full)
    assert (undone.production, undone.canary, undone.previous, undone.weights) == (2, None, None, {2: 100})
    with pytest.raises(PlinthError, match="no canary and no earlier production version"):
        traffic.rollback(undone)


def test_upstreams_of_versions_that_leave_the_split_are_forgotten():
    canary = traffic.promote(serving(2), 3, 10, OPEN).model_copy(update={"upstreams": {2: "http://a", 3: "http://b"}})
    assert traffic.rollback(canary).upstreams == {2: "http://a"}


def test_auto_rollback_is_recorded_with_its_reason():
    state = traffic.rollback(traffic.promote(serving(2), 3, 10, OPEN), reason="error rate 0.5 > 0.02")
    assert state.history[-1].action == "auto-rollback"
    assert state.history[-1].detail.endswith(": error rate 0.5 > 0.02")


LIMITS = AutoRollbackConfig(max_error_rate=0.02, max_p99_ms=50, min_requests=100)


@pytest.mark.parametrize(("canary", "production", "expected"), [
    ({"requests": 99, "errors": 99, "p99_ms": 900}, None, None),  # too few requests to judge
    ({"requests": 200, "errors": 10, "p99_ms": 5}, {"requests": 1000, "errors": 0, "p99_ms": 5}, "error rate 0.050 > 0.02 over 200 requests"),
    ({"requests": 200, "errors": 10, "p99_ms": 5}, {"requests": 1000, "errors": 100, "p99_ms": 5}, None),  # production is worse
    ({"requests": 200, "errors": 0, "p99_ms": 80}, {"requests": 1000, "errors": 0, "p99_ms": 6}, "p99 80.0 ms > 50.0 ms over 200 requests"),
    ({"requests": 200, "errors": 0, "p99_ms": 80}, {"requests": 1000, "errors": 0, "p99_ms": 90}, None),  # the machine is slow, not the canary
    ({"requests": 200, "errors": 1, "p99_ms": 10}, {"requests": 1000, "errors": 0, "p99_ms": 6}, None),  # within the limits
])
def test_breach(canary, production, expected):
    assert traffic.breach(LIMITS, canary, production) == expected


def test_latency_quantiles_are_within_the_bucket_resolution():
    histogram = LatencyHistogram()
    for ms in range(1, 1001):  # 1..1000 ms, uniform
        histogram.add(ms / 1000)
    assert histogram.quantile(0.5) == pytest.approx(0.500, rel=0.03)
    assert histogram.quantile(0.99) == pytest.approx(0.990, rel=0.03)
    assert LatencyHistogram().quantile(0.5) is None
    assert len(histogram.counts) < 400  # bounded, however many requests


def test_version_metrics_count_errors_rejections_and_the_mean_prediction():
    metrics = VersionMetrics()
    metrics.record(0.004, 200, [0.2, 0.4])
    metrics.record(0.004, 400, None)
    metrics.record(0.004, 0, None)  # no answer
    metrics.record(0.004, 503, None)
    snapshot = metrics.snapshot()
    assert (snapshot["requests"], snapshot["errors"], snapshot["rejected"]) == (4, 2, 1)
    assert snapshot["error_rate"] == 0.5
    assert snapshot["mean_prediction"] == pytest.approx(0.3)
    assert snapshot["p50_ms"] == pytest.approx(4.0, rel=0.03)
