"""Usage and cost: requests × run time per job and team, priced from the stack.

The cluster side is tested on Pod objects written the way the API server returns them
(`ApiClient.sanitize_for_serialization` of a V1PodList: camelCase keys, RFC 3339 times, quantities
as strings). That proves the arithmetic and the grouping by Plinth's labels; it does not prove
what a real cluster puts in those fields for every operator's pods (init containers, pods
restarted in place, a launcher that finishes before its workers), which only a cluster shows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from platform_cli.errors import PlinthError
from platform_cli.render.cluster import pod_groups
from platform_cli.spec.job import LoadedJob, parse_job_spec
from platform_cli.spec.stack import load_stack
from platform_cli.status import JobStatus
from platform_cli.targets.base import JobRecord
from platform_cli.usage import Pricing, gpu_series, parse_since, pod_usage, pricing, record_usage, team_totals

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
PRICES = Pricing(currency="USD", cpu_hour=0.04, gib_hour=0.005, gpu_hour=2.0, gpu_hour_by_pool={"a100": 4.10})


def horovod_job(workers: int = 2, gpu: int = 0) -> LoadedJob:
    spec = parse_job_spec({"kind": "horovod", "name": "ctr-train", "script": "train.py", "workers": workers,
                           "resources": {"cpu": 1, "memory": "2Gi", "gpu": gpu}}, where="test")
    return LoadedJob(spec=spec, file=Path("/project/train.job.yaml"))


def record(started: datetime | None, finished: datetime | None, status: JobStatus = JobStatus.SUCCEEDED) -> JobRecord:
    return JobRecord(id="ctr-train-b2c4d", name="ctr-train", kind="horovod", stack="local", status=status, submitted=T0,
                     started=started, finished=finished, output_dir="/out", checkpoint_dir="/ckpt")


def test_a_local_job_counts_its_pods_requests_times_its_run_time() -> None:
    # horovod, 2 workers of 1 CPU / 2Gi, plus the launcher (500m, 1Gi) it has on a cluster
    usage = record_usage(record(T0, T0 + timedelta(hours=2)), pod_groups(horovod_job()), "feed", None, PRICES, T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert (usage.cpu, usage.memory_gib, usage.gpu) == (2.5, 5.0, 0)
    assert usage.hours == pytest.approx(2.0)
    assert usage.cpu_hours == pytest.approx(5.0) and usage.memory_gib_hours == pytest.approx(10.0) and usage.gpu_hours == 0
    assert usage.cost == pytest.approx(5.0 * 0.04 + 10.0 * 0.005)
    assert (usage.team, usage.currency, usage.status) == ("feed", "USD", "Succeeded")


def test_only_the_part_of_a_run_inside_the_period_counts_and_a_running_job_counts_to_now() -> None:
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    groups = pod_groups(horovod_job(workers=1, gpu=1))
    clipped = record_usage(record(T0, T0 + timedelta(hours=2)), groups, "feed", "a100", PRICES, since, until)
    assert clipped.hours == pytest.approx(1.0) and clipped.gpu_hours == pytest.approx(1.0)
    assert clipped.cost == pytest.approx(1.5 * 0.04 + 3.0 * 0.005 + 1.0 * 4.10)  # the a100 pool's GPU price
    running = record_usage(record(T0 + timedelta(hours=2), None, JobStatus.RUNNING), groups, "feed", None, PRICES, since, until)
    assert running.hours == pytest.approx(1.0) and running.cost == pytest.approx(1.5 * 0.04 + 3.0 * 0.005 + 1.0 * 2.0)
    never_started = record_usage(record(None, None, JobStatus.PENDING), groups, "feed", None, PRICES, since, until)
    assert never_started.hours == 0 and never_started.cost == 0


def pod(job_id: str, role: str, phase: str, started: str | None, finished: str | None, requests: dict, pool: str | None = None, team: str = "feed") -> dict:
    """A Pod as `sanitize_for_serialization` returns it from the API."""
    state = {"terminated": {"exitCode": 0, "finishedAt": finished, "startedAt": started}} if finished else {"running": {"startedAt": started}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{job_id}-{role}-0", "namespace": team, "labels": {
            "app.kubernetes.io/managed-by": "plinth", "plinth.dev/job-id": job_id, "plinth.dev/job": job_id.rsplit("-", 1)[0],
            "plinth.dev/team": team, "plinth.dev/kind": "horovod", "plinth.dev/role": role}},
        "spec": {"containers": [{"name": "main", "image": "ghcr.io/plinth-ml/plinth-runtime:0.1.0", "resources": {"requests": requests, "limits": requests}}],
                 **({"nodeSelector": {"plinth.dev/gpu-pool": pool, "plinth.dev/gpu-type": "nvidia-a100"}} if pool else {})},
        "status": {"phase": phase, **({"startTime": started} if started else {}),
                   "containerStatuses": [{"name": "main", "image": "ghcr.io/plinth-ml/plinth-runtime:0.1.0",
                                                 "imageID": "ghcr.io/plinth-ml/plinth-runtime@sha256:" + "0" * 64,
                                                 "ready": phase == "Running", "restartCount": 0, "state": state}] if started else []},
    }


PODS = [
    pod("ctr-train-x7k2p", "launcher", "Succeeded", "2026-11-20T12:00:00Z", "2026-11-20T14:00:00Z", {"cpu": "500m", "memory": "1Gi"}),
    pod("ctr-train-x7k2p", "worker", "Succeeded", "2026-11-20T12:00:00Z", "2026-11-20T14:00:00Z", {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}, pool="a100"),
    pod("ctr-train-x7k2p", "worker", "Succeeded", "2026-11-20T12:30:00Z", "2026-11-20T14:00:00Z", {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}, pool="a100"),
    pod("spam-prep-q9w4z", "driver", "Running", "2026-11-20T13:00:00Z", None, {"cpu": "1", "memory": "2Gi"}, team="antispam"),
    pod("spam-prep-q9w4z", "executor", "Pending", None, None, {"cpu": "2", "memory": "4Gi"}, team="antispam"),
    {"metadata": {"name": "not-plinths", "labels": {"app": "other"}}, "spec": {"containers": []}, "status": {"phase": "Running", "startTime": "2026-11-20T12:00:00Z"}},
]


def test_cluster_usage_sums_each_pods_requests_over_its_own_run_time() -> None:
    until = T0 + timedelta(hours=4)
    usages = {u.job: u for u in pod_usage(PODS, "team-feed", PRICES, T0 - timedelta(days=1), until)}
    assert set(usages) == {"ctr-train-x7k2p", "spam-prep-q9w4z"}  # a pod without Plinth's labels is not a job
    train = usages["ctr-train-x7k2p"]
    assert (train.team, train.pool, train.status, train.gpu) == ("feed", "a100", "Succeeded", 2)
    assert train.started == T0 and train.finished == T0 + timedelta(hours=2)
    assert train.gpu_hours == pytest.approx(2.0 + 1.5)  # the second worker started half an hour later
    assert train.cpu_hours == pytest.approx(0.5 * 2 + 4 * 2 + 4 * 1.5)
    assert train.memory_gib_hours == pytest.approx(1 * 2 + 16 * 2 + 16 * 1.5)
    assert train.cost == pytest.approx(train.cpu_hours * 0.04 + train.memory_gib_hours * 0.005 + 3.5 * 4.10)
    spam = usages["spam-prep-q9w4z"]
    # The driver runs until now (3 h); the executor is still Pending, so it used nothing yet.
    assert (spam.team, spam.status, spam.finished) == ("antispam", "Running", None)
    assert spam.cpu_hours == pytest.approx(3.0) and spam.gpu_hours == 0


def test_team_totals_put_gpu_hours_against_the_quota_over_the_period() -> None:
    since, until = T0, T0 + timedelta(hours=10)
    jobs = pod_usage(PODS, "team-feed", PRICES, since, until)
    teams = {t.team: t for t in team_totals(jobs, {"team-feed/feed": 16, "team-feed/idle": 4}, since, until)}
    assert teams["feed"].gpu_utilisation == pytest.approx(3.5 / (16 * 10))
    assert teams["feed"].cost == pytest.approx(sum(j.cost for j in jobs if j.team == "feed"))
    assert teams["antispam"].gpu_quota is None and teams["antispam"].gpu_utilisation is None
    assert (teams["idle"].jobs, teams["idle"].gpu_utilisation) == (0, 0.0)  # a team with a quota and no jobs still shows


def test_gpu_series_counts_gpus_in_use_at_each_moment() -> None:
    jobs = pod_usage(PODS, "team-feed", PRICES, T0, T0 + timedelta(hours=3))
    series = gpu_series(jobs, T0, T0 + timedelta(hours=3), points=4)  # 12:00, 13:00, 14:00, 15:00
    assert series["t"][0] == "2026-11-20T12:00:00+00:00"
    assert series["teams"] == {"feed": [2, 2, 2, 0]}


@pytest.mark.parametrize("text", ["7", "3x", "0d", "-1h", "7 days"])
def test_a_period_that_is_not_one_says_what_it_takes(text: str) -> None:
    with pytest.raises(PlinthError, match=r"--since .*: expected a period such as 30m, 12h, 7d or 2w"):
        parse_since(text)
    assert parse_since("2w") == timedelta(weeks=2) and parse_since("30m") == timedelta(minutes=30)


def test_a_team_stack_is_priced_by_its_platform_stack(project: Path) -> None:
    feed = pricing(load_stack("team-feed"))
    assert (feed.currency, feed.cpu_hour, feed.gib_hour, feed.gpu_hour) == ("USD", 0.04, 0.005, 2.0)
    assert feed.gpu_hour_by_pool == {"a100": 4.10, "t4": 0.98}
    local = pricing(load_stack("local"))
    assert (local.cpu_hour, local.gib_hour, local.gpu_hour_by_pool) == (0.02, 0.003, {})


@pytest.mark.parametrize(
    ("prices", "expected"),
    [
        ("{pricePerCpuHour: -1}", "plinth:platform.prices.pricePerCpuHour: Input should be greater than or equal to 0"),
        ("{currency: dollars}", "plinth:platform.prices.currency: String should match pattern"),
        ("{pricePerGibHour: 1}", "plinth:platform.prices.pricePerGibHour: unknown key (check its spelling)"),
    ],
)
def test_bad_prices_name_the_key(project: Path, prices: str, expected: str) -> None:
    (project / "stacks" / "Pulumi.bad.yaml").write_text(f"config:\n  plinth:target: kubernetes\n  plinth:platform:\n    cluster: lab\n    prices: {prices}\n")
    with pytest.raises(PlinthError) as error:
        load_stack("bad")
    assert str(error.value).startswith(f"stacks/Pulumi.bad.yaml: {expected}")
