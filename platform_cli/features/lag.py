"""A streaming job's lag: the one payload its driver publishes and `plinth job status` reads,
wherever it travels.

- Locally the driver writes it to a file in the job's output dir (`LagFile`), which the CLI
  reads from the same disk.
- On Kubernetes the CLI often cannot read the team's HDFS or S3 storage, but it always reaches
  the API server: the driver annotates its own pod with it (`DriverPodLag`, annotation
  LAG_ANNOTATION), and the CLI reads the annotation from the job's driver pod (`pod_lag`). The
  driver knows its pod from the Spark properties spark-submit gives every Kubernetes driver
  (spark.kubernetes.driver.pod.name, spark.kubernetes.namespace) and patches it with the
  in-cluster identity of the job's service account, whose Role lets it patch pods (it creates
  its executors with the same rights). Writes are throttled: one pod update per trigger
  interval, at least PUBLISH_SECONDS apart, so a fast trigger does not load the API server.
"""

from __future__ import annotations

import json
import sys
import time

from pydantic import BaseModel, ValidationError

LAG_ANNOTATION = "plinth.dev/stream-lag"
PUBLISH_SECONDS = 5.0  # the least time between two updates of the driver pod


class StreamLag(BaseModel):
    """How far a streaming job is behind its source, as its driver last measured it."""

    batch: int | None = None
    processed: int = 0  # events applied to the store by committed micro-batches
    behind_events: int | None = None  # events the source holds that are not applied yet (None: unknown)
    behind_seconds: float | None = None  # how long the oldest of them has waited (None: unknown)
    event_time: float | None = None  # the newest event time applied (Unix seconds)
    updated: float | None = None  # when the driver measured it (Unix seconds)

    def shown(self) -> str:
        """The lag column of `plinth job status`."""
        if self.behind_events is None:
            return "?"
        return f"{self.behind_events} events" + ("" if self.behind_seconds is None else f" / {self.behind_seconds:.1f}s")


def parsed(text: str | None) -> StreamLag | None:
    """The payload as published, or None if there is none (yet) or it is not one."""
    if not text:
        return None
    try:
        return StreamLag.model_validate_json(text)
    except ValidationError:
        return None


def pod_lag(pod: dict) -> StreamLag | None:
    """The lag a driver published on its pod (a pod as the API returns it)."""
    return parsed(((pod.get("metadata") or {}).get("annotations") or {}).get(LAG_ANNOTATION))


# -- the driver's side ----------------------------------------------------------------------


class LagFile:
    """Publishes to a file (local runs: the job's output dir), on every measurement."""

    def __init__(self, location: str):
        self.location = location

    def publish(self, lag: StreamLag) -> None:
        from platform_cli import storage

        storage.write_text(self.location, lag.model_dump_json())


class DriverPodLag:
    """Publishes as an annotation on the driver's own pod (a JSON merge patch), at most once
    every `interval` seconds. A refused or failed update does not stop the stream: it is
    reported once in the driver's log and tried again at the next interval."""

    def __init__(self, kube, namespace: str, pod: str, interval: float):
        self.kube, self.namespace, self.pod, self.interval = kube, namespace, pod, interval
        self._last: float | None = None
        self._failing = False

    def publish(self, lag: StreamLag) -> bool:
        """True if the pod was updated now (False: too soon after the last update, or refused)."""
        from platform_cli.errors import PlinthError
        from platform_cli.kube import POD

        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        try:
            self.kube.patch(POD, self.namespace, self.pod, {"metadata": {"annotations": {LAG_ANNOTATION: lag.model_dump_json()}}})
        except PlinthError as exc:
            if not self._failing:
                print(f"stream lag not published on pod {self.namespace}/{self.pod}: {exc}", file=sys.stderr, flush=True)
            self._failing = True
            return False
        self._failing = False
        return True


def publisher(spark_conf: dict[str, str], progress_file: str, trigger: float) -> LagFile | DriverPodLag:
    """Where this driver publishes: its pod when Spark runs it on Kubernetes, else the file."""
    pod = spark_conf.get("spark.kubernetes.driver.pod.name")
    if not pod:
        return LagFile(progress_file)
    from kubernetes import client, config

    from platform_cli.kube import ErrorContext, KubeClient

    config.load_incluster_config()
    namespace = spark_conf.get("spark.kubernetes.namespace") or _own_namespace()
    return DriverPodLag(KubeClient(client.ApiClient(), ErrorContext("in-cluster", namespace)), namespace, pod, max(trigger, PUBLISH_SECONDS))


def _own_namespace() -> str:
    with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
        return handle.read().strip()


def offsets_behind(progress) -> int | None:
    """Events an offset-based source (Kafka) holds beyond the last batch, from Spark's own
    progress of that batch (a StreamingQueryProgress, or its JSON as a dict): per source and
    partition, its latest offset less the batch's end offset. None before the first batch or
    if a source does not report its latest offset."""
    if not progress:
        return None
    behind = 0
    for source in progress["sources"]:
        end, latest = _offsets(source.get("endOffset")), _offsets(source.get("latestOffset"))
        if end is None or latest is None:
            return None
        behind += sum(max(0, offset - end.get(partition, 0)) for partition, offset in latest.items())
    return behind


def _offsets(value) -> dict[tuple[str, str], int] | None:
    """Kafka's offsets ({"topic": {"0": 42, ...}}, as JSON or parsed) by (topic, partition)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    found = {}
    for topic, partitions in value.items():
        if not isinstance(partitions, dict):
            return None
        found.update({(topic, partition): int(offset) for partition, offset in partitions.items()})
    return found
