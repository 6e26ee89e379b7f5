"""Usage and cost: CPU-, memory- and GPU-hours per job and per team, priced from the stack.

A job's usage is what it asked for times how long it ran, clipped to the period asked about:

- on the local platform, the pods the job would have on a cluster (render/cluster.py
  `pod_groups`, from the job spec the local target keeps with each job) times the hours between
  its record's `started` and `finished` (now while it runs). Only the current attempt has times
  in the record, so the hours of earlier attempts of a restarted job are not counted;
- on a cluster stack, every pod's own requests (all containers) times the hours from the pod's
  start to the end of its last container (now while it runs), grouped by the job-id label.

Prices come from the stack: `plinth:local.prices` on the local platform; on a cluster the
platform stack's `prices` and each GPU pool's `pricePerGpuHour`. The functions on records and
pod dicts are pure; `stack_usage` is the only one that reads anything.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel

from platform_cli.errors import PlinthError

if TYPE_CHECKING:
    from platform_cli.render.cluster import PodGroup
    from platform_cli.spec.stack import Stack
    from platform_cli.targets.base import JobRecord

GIB = 2**30
GPU_RESOURCE = "nvidia.com/gpu"
POOL_LABEL = "plinth.dev/gpu-pool"
TEAM_LABEL = "team"  # a local job's team: its spec's labels.team, else its stack's name
_SINCE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(slots=True)
class JobUsage:
    """One job's usage in the period (a plain dataclass: a report holds thousands)."""

    job: str
    name: str
    kind: str
    team: str
    stack: str
    status: str
    pool: str | None
    started: datetime | None
    finished: datetime | None
    hours: float  # run time inside the period
    cpu: float  # requested cores, every pod together
    memory_gib: float
    gpu: int
    cpu_hours: float
    memory_gib_hours: float
    gpu_hours: float
    cost: float
    currency: str


class TeamUsage(BaseModel):
    team: str
    stack: str
    jobs: int
    cpu_hours: float
    memory_gib_hours: float
    gpu_hours: float
    cost: float
    currency: str
    gpu_quota: int | None  # GPUs the team may request (team stacks' quota.gpu)
    gpu_utilisation: float | None  # GPU-hours used / (quota × hours of the period)


class UsageReport(BaseModel):
    since: datetime
    until: datetime
    teams: list[TeamUsage]
    jobs: list[JobUsage]
    unavailable: dict[str, str] = {}  # stack -> why its usage could not be read


@dataclass(frozen=True)
class Pricing:
    """A stack's prices, resolved: what a CPU-, GiB- and GPU-hour (per pool) costs."""

    currency: str = "USD"
    cpu_hour: float = 0.0
    gib_hour: float = 0.0
    gpu_hour: float = 0.0
    gpu_hour_by_pool: dict[str, float] = field(default_factory=dict)

    def cost(self, cpu_hours: float, gib_hours: float, gpu_hours: float, pool: str | None) -> float:
        gpu_price = self.gpu_hour_by_pool.get(pool, self.gpu_hour) if pool else self.gpu_hour
        return cpu_hours * self.cpu_hour + gib_hours * self.gib_hour + gpu_hours * gpu_price


# -- how figures read -------------------------------------------------------------------------


def _small(value: float) -> str:
    """Two significant digits, written out (0.000081, not 8.1e-05)."""
    return f"{value:.{max(2, 1 - math.floor(math.log10(value)))}f}"


def hours_text(value: float) -> str:
    """Resource-hours for people: two significant digits when small (a 30-second job is not 0)."""
    if value == 0:
        return "0"
    return _small(value) if value < 0.01 else f"{value:.3f}" if value < 10 else f"{value:,.1f}"


def money_text(value: float, currency: str) -> str:
    shown = "0" if value == 0 else _small(value) if value < 0.01 else f"{value:,.2f}"
    return f"{shown} {currency}".strip()


# -- periods ---------------------------------------------------------------------------------


def parse_since(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` as a period ending now."""
    match = _SINCE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise PlinthError(f"--since {text!r}: expected a period such as 30m, 12h, 7d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def overlap_hours(start: datetime | None, end: datetime | None, since: datetime, until: datetime) -> float:
    """Hours of [start, end] inside [since, until]; a job that has not started used none."""
    if start is None:
        return 0.0
    end = min(end or until, until)
    start = max(start, since)
    return max(0.0, (end - start).total_seconds() / 3600)


# -- pure: records and pods to usage ---------------------------------------------------------


def _usage(*, job: str, name: str, kind: str, team: str, stack: str, status: str, pool: str | None, started, finished,
           cpu: float, memory_bytes: float, gpu: int, since: datetime, until: datetime, pricing: Pricing) -> JobUsage:
    hours = overlap_hours(started, finished, since, until)
    memory_gib = memory_bytes / GIB
    cpu_hours, gib_hours, gpu_hours = cpu * hours, memory_gib * hours, gpu * hours
    return JobUsage(
        job=job, name=name, kind=kind, team=team, stack=stack, status=status, pool=pool, started=started, finished=finished,
        hours=hours, cpu=cpu, memory_gib=memory_gib, gpu=gpu, cpu_hours=cpu_hours, memory_gib_hours=gib_hours, gpu_hours=gpu_hours,
        cost=pricing.cost(cpu_hours, gib_hours, gpu_hours, pool), currency=pricing.currency,
    )


def record_usage(record: JobRecord, groups: list[PodGroup], team: str, pool: str | None, pricing: Pricing, since: datetime, until: datetime) -> JobUsage:
    """A local job's usage: its pod groups' requests × its record's run time in the period."""
    from platform_cli.render.cluster import parse_quantity

    return _usage(
        job=record.id, name=record.name, kind=record.kind, team=team, stack=record.stack, status=record.status.value, pool=pool,
        started=record.started, finished=record.finished,
        cpu=float(sum(g.count * parse_quantity(g.cpu) for g in groups)),
        memory_bytes=float(sum(g.count * parse_quantity(g.memory) for g in groups)),
        gpu=sum(g.count * g.gpu for g in groups), since=since, until=until, pricing=pricing,
    )


def pod_usage(pods: Iterable[dict], stack: str, pricing: Pricing, since: datetime, until: datetime) -> list[JobUsage]:
    """Usage of the jobs that own `pods` (Kubernetes Pod objects as the API returns them, e.g.
    `ApiClient.sanitize_for_serialization`): each pod's requests × its run time, summed per job."""
    from platform_cli.render.cluster import LABEL_JOB, LABEL_JOB_ID, LABEL_KIND, LABEL_TEAM, parse_quantity

    by_job: dict[str, list[dict]] = defaultdict(list)
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if LABEL_JOB_ID in labels:
            by_job[labels[LABEL_JOB_ID]].append(pod)
    usages = []
    for job_id, job_pods in sorted(by_job.items()):
        labels = job_pods[0]["metadata"]["labels"]
        cpu_hours = gib_hours = gpu_hours = 0.0
        cpu = memory = 0.0
        gpu = 0
        starts, ends, phases = [], [], []
        pool = None
        for pod in job_pods:
            requests = _pod_requests(pod, parse_quantity)
            start, end, phase = _pod_times(pod)
            hours = overlap_hours(start, end, since, until)
            cpu, memory, gpu = cpu + requests[0], memory + requests[1], gpu + int(requests[2])
            cpu_hours += requests[0] * hours
            gib_hours += requests[1] / GIB * hours
            gpu_hours += requests[2] * hours
            starts += [start] if start else []
            ends.append(end)
            phases.append(phase)
            pool = pool or ((pod.get("spec") or {}).get("nodeSelector") or {}).get(POOL_LABEL)
        started = min(starts) if starts else None
        finished = max(ends) if ends and all(e is not None for e in ends) else None
        usages.append(JobUsage(
            job=job_id, name=labels.get(LABEL_JOB, job_id), kind=labels.get(LABEL_KIND, "-"), team=labels.get(LABEL_TEAM, "-"),
            stack=stack, status=_job_phase(phases), pool=pool, started=started, finished=finished,
            hours=overlap_hours(started, finished, since, until), cpu=cpu, memory_gib=memory / GIB, gpu=gpu,
            cpu_hours=cpu_hours, memory_gib_hours=gib_hours, gpu_hours=gpu_hours,
            cost=pricing.cost(cpu_hours, gib_hours, gpu_hours, pool), currency=pricing.currency,
        ))
    return usages


def _pod_requests(pod: dict, parse_quantity: Callable) -> tuple[float, float, float]:
    cpu = memory = gpu = 0.0
    for container in (pod.get("spec") or {}).get("containers") or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += float(parse_quantity(requests.get("cpu", 0)))
        memory += float(parse_quantity(requests.get("memory", 0)))
        gpu += float(parse_quantity(requests.get(GPU_RESOURCE, 0)))
    return cpu, memory, gpu


def _pod_times(pod: dict) -> tuple[datetime | None, datetime | None, str]:
    """When the pod started, when its last container ended (None while it runs), its phase."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    start = _timestamp(status.get("startTime"))
    if phase not in ("Succeeded", "Failed"):
        return start, None, phase
    ends = [_timestamp(((s.get("state") or {}).get("terminated") or {}).get("finishedAt")) for s in status.get("containerStatuses") or []]
    ends = [e for e in ends if e is not None]
    return start, max(ends) if ends else start, phase


def _job_phase(phases: list[str]) -> str:
    for phase in ("Running", "Failed", "Pending"):
        if phase in phases:
            return phase
    return "Succeeded" if phases else "Pending"


def _timestamp(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def team_totals(jobs: list[JobUsage], quotas: dict[str, int | None], since: datetime, until: datetime) -> list[TeamUsage]:
    """Per team (and stack): sums of the jobs' usage; GPU utilisation against the team's quota."""
    period_hours = (until - since).total_seconds() / 3600
    grouped: dict[tuple[str, str], list[JobUsage]] = defaultdict(list)
    for job in jobs:
        grouped[(job.team, job.stack)].append(job)
    for team in quotas:  # a team with a quota and no jobs still has a row (0% of its GPUs)
        stack, name = team.split("/", 1)
        grouped.setdefault((name, stack), [])
    teams = []
    for (team, stack), members in sorted(grouped.items()):
        gpu_hours = sum(j.gpu_hours for j in members)
        quota = quotas.get(f"{stack}/{team}")
        teams.append(TeamUsage(
            team=team, stack=stack, jobs=len(members),
            cpu_hours=sum(j.cpu_hours for j in members), memory_gib_hours=sum(j.memory_gib_hours for j in members),
            gpu_hours=gpu_hours, cost=sum(j.cost for j in members), currency=members[0].currency if members else "",
            gpu_quota=quota, gpu_utilisation=gpu_hours / (quota * period_hours) if quota and period_hours > 0 else None,
        ))
    return teams


def gpu_series(jobs: list[JobUsage], since: datetime, until: datetime, points: int = 48) -> dict:
    """GPUs in use per team at `points` moments across the period: what the console charts
    against each team's quota."""
    step = (until - since) / max(points - 1, 1)
    moments = [since + step * i for i in range(points)]
    series: dict[str, list[int]] = {}
    for job in jobs:
        if not job.gpu or job.started is None:
            continue
        end = job.finished or until
        values = series.setdefault(job.team, [0] * points)
        for i, moment in enumerate(moments):
            if job.started <= moment <= end:
                values[i] += job.gpu
    return {"t": [m.isoformat(timespec="seconds") for m in moments], "teams": series}


# -- reading a stack --------------------------------------------------------------------------


def pricing(stack: Stack) -> Pricing:
    """The stack's prices: the local platform's own, or its cluster's platform stack's."""
    if stack.role == "local":
        prices, pools = stack.config.local.prices, {}
    else:
        platform = stack if stack.role == "platform" else stack.platform_stack()
        offered = platform.config.platform
        prices = offered.prices
        pools = {pool.name: offered.gpu_hour_price(pool.name) for pool in offered.gpu_pools}
    return Pricing(currency=prices.currency, cpu_hour=prices.price_per_cpu_hour, gib_hour=prices.price_per_gib_hour,
                   gpu_hour=prices.price_per_gpu_hour, gpu_hour_by_pool=pools)


def job_team(stack: Stack, labels: dict[str, str]) -> str:
    """The team a job is counted for: its team stack's team, else (local platform) its spec's
    `team` label, else the stack's name."""
    if stack.config.team is not None:
        return stack.config.team.name
    return labels.get(TEAM_LABEL) or stack.name


def gpu_quotas(stack: Stack) -> dict[str, int | None]:
    """`stack/team` -> GPU quota, for the teams a stack has (none on the local platform)."""
    team = stack.config.team
    return {f"{stack.name}/{team.name}": team.quota.gpu} if team is not None else {}


def stack_usage(stack: Stack, since: datetime, until: datetime) -> list[JobUsage]:
    """Every job of the stack that ran in the period, with its usage."""
    from platform_cli.targets import get_target

    if stack.role == "platform":
        return []  # a platform stack runs no jobs; its teams' stacks do
    price = pricing(stack)
    target = get_target(stack)
    if hasattr(target, "loaded_job"):  # a target that keeps its jobs' records and specs here
        from platform_cli.render.cluster import pod_groups

        usages = []
        for record in target.list():
            if record.started is None or (record.finished is not None and record.finished < since):
                continue
            job = target.loaded_job(record.id, record)
            usages.append(record_usage(record, pod_groups(job), job_team(stack, job.spec.labels), job.spec.pool, price, since, until))
        return [u for u in usages if u.hours > 0]
    return [u for u in pod_usage(target.pods(), stack.name, price, since, until) if u.hours > 0]


def usage_report(stacks: list[Stack], since: datetime, until: datetime | None = None, team: str | None = None) -> UsageReport:
    """Usage of every job and team of `stacks` in [since, until]; a stack that cannot be read
    (an unreachable cluster) is named in `unavailable` instead of failing the whole report."""
    until = until or datetime.now(timezone.utc)
    jobs: list[JobUsage] = []
    quotas: dict[str, int | None] = {}
    unavailable = {}
    for stack in stacks:
        try:
            jobs += stack_usage(stack, since, until)
            quotas |= gpu_quotas(stack)
        except PlinthError as exc:
            unavailable[stack.name] = str(exc)
    if team is not None:
        jobs = [j for j in jobs if j.team == team]
        quotas = {k: v for k, v in quotas.items() if k.split("/", 1)[1] == team}
    jobs.sort(key=lambda j: (j.team, j.started or since, j.job))
    return UsageReport.model_construct(since=since, until=until, teams=team_totals(jobs, quotas, since, until), jobs=jobs, unavailable=unavailable)
