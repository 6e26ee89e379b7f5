"""Gray release as data: which versions of a model take what share of its traffic.

Everything here is pure: a TrafficState goes in, a new TrafficState (or a PlinthError saying
why the move is refused) comes out. The local release target (serving/release.py) and the
router process (serving/router.py) do the side effects; the cluster renderer reads the same
state to write the KServe traffic split.

    state = promote(state, version=3, percent=10, policy=policy)   # 90% production, 10% v3
    state = rollout(state, percent=50, policy=policy)              # refused until approved
    state = approve(state, version=3)
    state = rollout(state, percent=None, policy=policy)            # --full: v3 is production
    state = rollback(state)                                        # back to the previous one

Weights are whole percentages that always sum to 100 over the live versions.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from platform_cli.errors import PlinthError
from platform_cli.spec.stack import AutoRollbackConfig, GrayReleaseConfig, canary_share_problem

Action = Literal["promote", "rollout", "approve", "rollback", "auto-rollback"]
# Kept on disk for `plinth model history`; older events are dropped beyond this many.
HISTORY_LIMIT = 50


class Event(BaseModel):
    at: datetime
    action: Action
    version: int
    detail: str
    weights: dict[int, int]


class TrafficState(BaseModel):
    """One model's live traffic split (stack home: serving/traffic/<model>.json)."""

    model: str
    generation: int = 0  # bumped by every change; the router reports the one it applied
    production: int | None = None
    canary: int | None = None
    # The production version before the last full rollout: what `rollback` returns to.
    previous: int | None = None
    weights: dict[int, int] = Field(default_factory=dict)  # version -> percent of requests
    upstreams: dict[int, str] = Field(default_factory=dict)  # version -> its server's base URL
    # version -> the parameter store its server reads embedding rows from; absent: the whole model.
    parameters: dict[int, str] = Field(default_factory=dict)
    approved: list[int] = Field(default_factory=list)
    auto_rollback: AutoRollbackConfig | None = None  # the stack's limits, for the router to apply
    history: list[Event] = Field(default_factory=list)

    def stage(self, version: int) -> str:
        if version == self.production:
            return "production"
        if version == self.canary:
            return "canary"
        return "-"


def promote(state: TrafficState, version: int, percent: int | None, policy: GrayReleaseConfig) -> TrafficState:
    """Send `percent` of traffic to `version` as the canary (default: the stack's canaryMax).

    With no production version yet there is nothing to compare against: the version becomes
    production with all traffic.
    """
    if state.production is None:
        return _changed(state, "promote", version, f"version {version} is production (no earlier production version)",
                        production=version, canary=None, weights={version: 100})
    if version == state.production:
        if state.canary is None:
            return state  # already all there is: nothing to change (re-running a promote is safe)
        raise PlinthError(f"version {version} of {state.model} is already production", f"roll the canary (version {state.canary}) out or back instead")
    if state.canary is not None and state.canary != version:
        raise PlinthError(
            f"version {state.canary} of {state.model} is already the canary",
            f"roll it out (plinth model rollout {state.model} --full) or back (plinth model rollback {state.model}) first",
        )
    percent = policy.canary_max if percent is None else _canary_share("canary", percent)
    _require_approval(state, version, percent, policy)
    return _changed(state, "promote", version, f"version {version} is the canary with {percent}%",
                    canary=version, weights=_split(state.production, version, percent))


def rollout(state: TrafficState, percent: int | None, policy: GrayReleaseConfig) -> TrafficState:
    """Give the canary `percent` of traffic, or (percent None: a full rollout) make it production."""
    canary = _the_canary(state, "roll out")
    if percent is None:
        _require_approval(state, canary, 100, policy)
        return _changed(state, "rollout", canary, f"version {canary} is production with 100% (was version {state.production})",
                        production=canary, canary=None, previous=state.production, weights={canary: 100})
    _canary_share("weight", percent)
    _require_approval(state, canary, percent, policy)
    return _changed(state, "rollout", canary, f"version {canary} has {percent}%",
                    weights=_split(state.production, canary, percent))


def approve(state: TrafficState, version: int | None) -> TrafficState:
    """Allow the canary (or `version`, which must be it) to take more than canaryMax."""
    canary = _the_canary(state, "approve")
    if version is not None and version != canary:
        raise PlinthError(f"version {version} of {state.model} is not the canary (version {canary} is)", f"approve version {canary}")
    if canary in state.approved:
        return state
    return _changed(state, "approve", canary, f"version {canary} approved beyond the canary share",
                    approved=sorted({*state.approved, canary}))


def rollback(state: TrafficState, reason: str | None = None) -> TrafficState:
    """All traffic back to production (dropping the canary), or, with no canary, back to the
    production version before the last full rollout."""
    action: Action = "auto-rollback" if reason else "rollback"
    why = f": {reason}" if reason else ""
    # A version that was rolled back needs a fresh approval before it takes a large share again.
    if state.canary is not None:
        return _changed(state, action, state.canary, f"version {state.canary} rolled back, version {state.production} has 100%{why}",
                        canary=None, weights={state.production: 100}, approved=[v for v in state.approved if v != state.canary])
    if state.previous is not None and state.production is not None:
        return _changed(state, action, state.production, f"version {state.production} rolled back to version {state.previous}{why}",
                        production=state.previous, previous=None, weights={state.previous: 100},
                        approved=[v for v in state.approved if v != state.production])
    raise PlinthError(f"{state.model} has no canary and no earlier production version to roll back to")


def from_aliases(model: str, aliases: dict[str, int], percent: int | None, policy: GrayReleaseConfig) -> TrafficState:
    """The split a model's `production` and `canary` aliases stand for (what a cluster serves):
    the canary with `percent` (default: the stack's canaryMax), production with the rest."""
    production, canary = aliases.get("production"), aliases.get("canary")
    if production is None:
        raise PlinthError(f"model '{model}' has no production version", f"promote one first: plinth model promote {model} VERSION")
    weights = {production: 100}
    if canary is not None:
        percent = policy.canary_max if percent is None else _canary_share("canary", percent)
        weights = {production: 100 - percent, canary: percent}
    return TrafficState(model=model, production=production, canary=canary, weights=weights)


def breach(limits: AutoRollbackConfig, canary: dict, production: dict | None) -> str | None:
    """Why the canary should be rolled back, or None. `canary`/`production` are router metrics
    (requests, errors, p99_ms, down). A limit counts only where the canary also does worse than
    production, so a machine-wide slowdown does not roll back a healthy canary."""
    if canary.get("down"):
        # Its server refuses connections: nothing to wait for, whatever the request count.
        return "its server is down: its port refuses connections"
    if canary["requests"] < limits.min_requests:
        return None
    production = production or {"requests": 0, "errors": 0, "p99_ms": None}
    rate = canary["errors"] / canary["requests"]
    production_rate = production["errors"] / production["requests"] if production["requests"] else 0.0
    if rate > limits.max_error_rate and rate > production_rate:
        return f"error rate {rate:.3f} > {limits.max_error_rate} over {canary['requests']} requests"
    p99 = canary.get("p99_ms")
    if limits.max_p99_ms is not None and p99 is not None and p99 > limits.max_p99_ms and p99 > (production.get("p99_ms") or 0.0):
        return f"p99 {p99:.1f} ms > {limits.max_p99_ms} ms over {canary['requests']} requests"
    return None


def _canary_share(field: str, percent: int) -> int:
    if problem := canary_share_problem(percent):
        raise PlinthError(f"{field}: {problem}")
    return percent


def _the_canary(state: TrafficState, verb: str) -> int:
    if state.canary is None:
        raise PlinthError(f"{state.model} has no canary to {verb}", f"promote a version first: plinth model promote {state.model} VERSION --canary 10")
    return state.canary


def _require_approval(state: TrafficState, version: int, percent: int, policy: GrayReleaseConfig) -> None:
    if policy.require_approval and percent > policy.canary_max and version not in state.approved:
        raise PlinthError(
            f"version {version} of {state.model} needs approval before it takes more than {policy.canary_max}% of traffic",
            f"run plinth model approve {state.model} {version}",
        )


def _split(production: int, canary: int, percent: int) -> dict[int, int]:
    return {production: 100 - percent, canary: percent}


def _changed(state: TrafficState, action: Action, version: int, detail: str, **changes) -> TrafficState:
    updated = state.model_copy(update=changes)
    live = set(updated.weights)
    event = Event(at=datetime.now(timezone.utc), action=action, version=version, detail=detail, weights=updated.weights)
    return updated.model_copy(update={
        "generation": state.generation + 1,
        # Servers of versions that left the split are stopped; forget where they were.
        "upstreams": {v: url for v, url in updated.upstreams.items() if v in live},
        "history": [*state.history, event][-HISTORY_LIMIT:],
    })
