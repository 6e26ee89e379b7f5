"""The model library: trained models as versioned entries in MLflow's model registry.

A registered version is the trained model directory (a TF SavedModel plus feature_spec.json)
logged as the artifacts of one MLflow run, with the training metrics as run metrics and the
lineage (job, data inputs, code revision) as run params. The version itself carries the same
metrics and lineage as tags, so reading a version back needs no second lookup of its run.

Everything here returns plain pydantic data; anything a user can fix raises PlinthError.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from pydantic import BaseModel

from platform_cli.errors import PlinthError
from platform_cli.samples import SampleInput, split_location

# MLflow takes seconds to import; this module is only imported by the model commands.
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from mlflow.utils.time import get_current_time_millis

# Version tags are namespaced so lineage and metrics round-trip without guessing which is which.
_LINEAGE_TAG = "lineage."
_METRIC_TAG = "metric."
_EXPORT_TAG = "export."
_MODEL_ARTIFACT_PATH = "model"
# A version's exports (edge models) are artifacts of its run beside the model: exports/<key>/.
_EXPORTS_ARTIFACT_PATH = "exports"
# Model names end up in URLs (/v1/models/<name>) and in MLflow filter strings, so keep them plain.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

_T = TypeVar("_T")


class ModelVersion(BaseModel):
    name: str
    version: int
    created: datetime
    metrics: dict[str, float]
    lineage: dict[str, str]
    aliases: list[str]
    source: str
    run_id: str
    # Exports for devices, by key (tflite-none, tflite-float16, ...): what `record_export` kept.
    exports: dict[str, dict] = {}


class ModelSummary(BaseModel):
    name: str
    latest_version: int | None
    aliases: dict[str, int]
    updated: datetime


def _quiet_mlflow() -> None:
    # The CLI owns the terminal, so only real problems may get through: the sqlite store logs
    # every alembic migration step at INFO when it creates a fresh database, and against an
    # MLflow server, ending a run writes "View run ... at <url>" lines straight to stdout.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


class ModelRegistry:
    """MLflow's model registry behind the operations the CLI needs.

    tracking_uri is used as both tracking and registry URI (sqlite:///... when embedded, an
    MLflow server on a cluster). artifact_root is where new experiments keep their artifacts:
    a local path or any URI MLflow can write to.
    """

    def __init__(self, tracking_uri: str, artifact_root: str):
        _quiet_mlflow()
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._artifact_root = _as_uri(artifact_root)
        # The embedded registry is one SQLite file that every write changes: a long-running
        # reader (the console) answers a repeated read from memory until the file changes.
        self._database = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
        self._reads: dict[tuple, tuple[tuple, object]] = {}

    def _read(self, key: tuple, read: Callable[[], _T]) -> _T:
        if self._database is None:
            return read()
        stamp = self._database_stamp()  # taken before reading: a write meanwhile makes the next call read again
        hit = self._reads.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        value = read()
        self._reads[key] = (stamp, value)
        return value

    def _database_stamp(self) -> tuple:
        stamps = []
        for path in (self._database, self._database + "-wal", self._database + "-journal"):
            try:
                info = os.stat(path)
                stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)

    def register(
        self,
        name: str,
        model_dir: Path,
        metrics: dict[str, float],
        lineage: dict[str, str],
        datasets: Sequence[SampleInput] = (),
    ) -> ModelVersion:
        """Log model_dir as a new run's artifacts and register it as the next version of name;
        `datasets`, the sample table versions it was trained on, become the run's dataset inputs."""
        _check_name(name)
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise PlinthError(
                f"model directory {model_dir} does not exist",
                fix="pass the output directory of a finished training job",
            )
        with _mlflow_errors():
            run_id = self._log_run(name, model_dir, metrics, lineage, datasets)
            if not self._exists(name):
                self._client.create_registered_model(name)
            tags = {_LINEAGE_TAG + k: str(v) for k, v in lineage.items()}
            tags |= {_METRIC_TAG + k: repr(float(v)) for k, v in metrics.items()}
            created = self._client.create_model_version(
                name, f"runs:/{run_id}/{_MODEL_ARTIFACT_PATH}", run_id=run_id, tags=tags
            )
        return self.get(name, int(created.version))

    def list_models(self) -> list[ModelSummary]:
        return list(self._read(("models",), self._list_models))

    def _list_models(self) -> list[ModelSummary]:
        with _mlflow_errors():
            models = list(_all_pages(self._client.search_registered_models))
            latest: dict[str, int] = {}
            for mv in _all_pages(self._client.search_model_versions):
                latest[mv.name] = max(latest.get(mv.name, 0), int(mv.version))
        return [
            ModelSummary(
                name=m.name,
                latest_version=latest.get(m.name),
                aliases={alias: int(v) for alias, v in m.aliases.items()},
                updated=_from_millis(m.last_updated_timestamp),
            )
            for m in sorted(models, key=lambda m: m.name)
        ]

    def versions(self, name: str) -> list[ModelVersion]:
        """All versions of name, oldest first."""
        return list(self._read(("versions", name), lambda: self._versions(name)))

    def _versions(self, name: str) -> list[ModelVersion]:
        self._require_model(name)
        aliases = self._aliases_by_version(name)
        with _mlflow_errors():
            found = _all_pages(
                lambda **page: self._client.search_model_versions(f"name = '{name}'", **page)
            )
            return sorted(
                (_to_version(mv, aliases.get(int(mv.version), [])) for mv in found),
                key=lambda v: v.version,
            )

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """One version of name; the latest when version is None."""
        existing = self.versions(name)
        if not existing:
            raise PlinthError(f"model '{name}' has no versions", fix="register a trained model")
        if version is None:
            return existing[-1]
        for candidate in existing:
            if candidate.version == version:
                return candidate
        raise PlinthError(
            f"model '{name}' has no version {version}",
            fix="versions: " + ", ".join(str(v.version) for v in existing),
        )

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases (production, canary, ...) and the versions they point at."""
        self._require_model(name)
        with _mlflow_errors():
            return {alias: int(v) for alias, v in self._client.get_registered_model(name).aliases.items()}

    def set_aliases(self, name: str, wanted: dict[str, int | None]) -> None:
        """Point each alias at its version, or remove it (None); aliases not named are kept.

        Aliases are how other tools find a stage (e.g. an evaluation step asks MLflow for the
        `production` version), so the release commands keep them in step with the traffic.
        """
        current = self.aliases(name)
        with _mlflow_errors():
            for alias, version in sorted(wanted.items()):
                if version is None and alias in current:
                    self._client.delete_registered_model_alias(name, alias)
                elif version is not None and current.get(alias) != version:
                    self._client.set_registered_model_alias(name, alias, str(version))

    def tag_version(self, name: str, version: int, key: str, value: str) -> None:
        with _mlflow_errors():
            self._client.set_model_version_tag(name, str(version), key, value)

    def artifact_uri(self, name: str, version: int) -> str:
        """Where the version's model directory is stored (file://, hdfs://, s3://): what a
        cluster's storage initializer downloads."""
        return self._stored_uri(self.get(name, version), _MODEL_ARTIFACT_PATH)

    def export_uri(self, name: str, version: int, key: str) -> str:
        """Where one of the version's exports is stored (kept by `record_export`): what a
        cluster's storage initializer downloads to serve it."""
        found = self.get(name, version)
        if key not in found.exports:
            raise PlinthError(f"model {name} version {found.version} has no {key} export")
        return self._stored_uri(found, f"{_EXPORTS_ARTIFACT_PATH}/{key}")

    def _stored_uri(self, found: ModelVersion, path: str) -> str:
        with _mlflow_errors():
            return self._client.get_run(found.run_id).info.artifact_uri.rstrip("/") + f"/{path}"

    def model_dir(self, name: str, version: int | None = None) -> Path:
        """Local directory of the version's model (a temporary copy if the store is remote)."""
        return self._artifact_dir(name, version, _MODEL_ARTIFACT_PATH)

    def export_dir(self, name: str, version: int, key: str) -> Path:
        """Local directory of one of the version's exports (kept by `record_export`)."""
        found = self.get(name, version)
        if key not in found.exports:
            raise PlinthError(f"model {name} version {found.version} has no {key} export")
        return self._artifact_dir(name, found.version, f"{_EXPORTS_ARTIFACT_PATH}/{key}")

    def _artifact_dir(self, name: str, version: int | None, path: str) -> Path:
        found = self.get(name, version)
        with _mlflow_errors():
            artifact_uri = self._client.get_run(found.run_id).info.artifact_uri
            if urlparse(artifact_uri).scheme in ("", "file"):
                # Serve straight from the local store: a copy per serve would only cost time.
                return Path(local_file_uri_to_path(artifact_uri)) / path
            dst = tempfile.mkdtemp(prefix=f"plinth-{name}-v{found.version}-")
            return Path(self._client.download_artifacts(found.run_id, path, dst))

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version `alias` (production, canary) points at, or None if it is not set."""
        self._require_model(name)
        with _mlflow_errors():
            aliases = self._client.get_registered_model(name).aliases
            if alias not in aliases:
                return None
            return int(self._client.get_model_version_by_alias(name, alias).version)

    def record_evaluation(self, name: str, version: int, metrics: dict[str, float], tags: dict[str, str], report_dir: Path) -> None:
        """Keep an evaluation with the version: metrics as `metric.eval_*` version tags (so they
        read back with the version's metrics) and run metrics, the rest as `eval.*` tags, and
        the report as artifacts of the version's run under evaluation/."""
        found = self.get(name, version)
        with _mlflow_errors():
            for key, value in metrics.items():
                self._client.set_model_version_tag(name, str(version), f"{_METRIC_TAG}eval_{key}", repr(float(value)))
            for key, value in tags.items():
                self._client.set_model_version_tag(name, str(version), f"eval.{key}", str(value))
            if found.run_id:
                now = get_current_time_millis()
                self._client.log_batch(found.run_id, metrics=[Metric(f"eval_{k}", float(v), now, 0) for k, v in metrics.items()])
                self._client.log_artifacts(found.run_id, str(report_dir), "evaluation")

    def record_export(self, name: str, version: int, key: str, export_dir: Path, summary: dict) -> str:
        """Keep an export with the version: its files as artifacts of the version's run under
        exports/<key>/ (replacing an earlier export of that key), then `summary` as the version
        tag export.<key> (with "artifacts": that path), last, so a version never lists an export
        whose files are not all there. Returns the artifacts' location (a URI)."""
        found = self.get(name, version)
        location = f"{_EXPORTS_ARTIFACT_PATH}/{key}"
        with _mlflow_errors():
            self._client.log_artifacts(found.run_id, str(export_dir), location)
            self._client.set_model_version_tag(name, str(version), _EXPORT_TAG + key, json.dumps(summary | {"artifacts": location}, sort_keys=True))
        return self._stored_uri(found, location)

    def _log_run(
        self, name: str, model_dir: Path, metrics: dict[str, float], lineage: dict[str, str], datasets: Sequence[SampleInput] = ()
    ) -> str:
        run = self._client.create_run(self._experiment_id(name), run_name=f"register-{name}")
        run_id = run.info.run_id
        try:
            now = get_current_time_millis()
            self._client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)) for k, v in lineage.items()],
            )
            if datasets:
                self._client.log_inputs(run_id, datasets=[_dataset_input(d) for d in datasets])
            self._client.log_artifacts(run_id, str(model_dir), _MODEL_ARTIFACT_PATH)
        except BaseException:
            self._client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        self._client.set_terminated(run_id)
        return run_id

    def _experiment_id(self, name: str) -> str:
        experiment_name = f"models/{name}"
        experiment = self._client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return self._client.create_experiment(
                experiment_name, artifact_location=f"{self._artifact_root}/{name}"
            )
        if experiment.lifecycle_stage == "deleted":
            self._client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _exists(self, name: str) -> bool:
        try:
            self._client.get_registered_model(name)
        except MlflowException as e:
            if e.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                return False
            raise
        return True

    def _require_model(self, name: str) -> None:
        _check_name(name)
        with _mlflow_errors():
            if self._exists(name):
                return
            known = [m.name for m in _all_pages(self._client.search_registered_models)]
        raise PlinthError(
            f"no model named '{name}' in the registry",
            fix="known models: " + ", ".join(sorted(known)) if known else "the registry is empty",
        )

    def _aliases_by_version(self, name: str) -> dict[int, list[str]]:
        # Version search results may leave aliases unpopulated; the registered model has them all.
        with _mlflow_errors():
            aliases = self._client.get_registered_model(name).aliases
        by_version: dict[int, list[str]] = {}
        for alias, version in sorted(aliases.items()):
            by_version.setdefault(int(version), []).append(alias)
        return by_version


def _to_version(mv, aliases: list[str]) -> ModelVersion:
    tags = mv.tags or {}
    return ModelVersion(
        name=mv.name,
        version=int(mv.version),
        created=_from_millis(mv.creation_timestamp),
        metrics={k: float(v) for k, v in _tags_under(tags, _METRIC_TAG).items()},
        lineage=_tags_under(tags, _LINEAGE_TAG),
        aliases=aliases,
        source=mv.source,
        run_id=mv.run_id or "",
        exports={k: json.loads(v) for k, v in sorted(_tags_under(tags, _EXPORT_TAG).items())},
    )


def _dataset_input(sample: SampleInput) -> DatasetInput:
    """A sample table version as an MLflow dataset input of the training run: a Delta table
    source at that version, MLflow's digest field (at most 36 characters) the start of the
    content digest, which the profile carries whole."""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    table, _ = split_location(sample.location)
    # DeltaDatasetSource's own to_json drops a version 0 (it keeps only truthy fields); the
    # same JSON with the version kept is what its from_json reads back.
    source = json.dumps({"path": table, **({"delta_table_version": sample.version} if sample.version is not None else {})})
    profile = {"digest": sample.digest, **({"num_rows": sample.rows} if sample.rows is not None else {})}
    dataset = Dataset(name=sample.pinned, digest=sample.digest.split(":", 1)[-1][:32] or "unpinned", source_type=DeltaDatasetSource._get_source_type(),
                      source=source, profile=json.dumps(profile))
    return DatasetInput(dataset=dataset, tags=[InputTag(key="mlflow.data.context", value="training")])


def _tags_under(tags: dict[str, str], prefix: str) -> dict[str, str]:
    return {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}


def _all_pages(search: Callable[..., list[_T]]) -> Iterator[_T]:
    """Every result of an MLflow search call, following page tokens."""
    token = None
    while True:
        page = search(page_token=token)
        yield from page
        token = page.token
        if not token:
            return


@contextmanager
def _mlflow_errors() -> Iterator[None]:
    """Turn MLflow failures (bad URI, unreachable server, invalid tag) into one-line errors."""
    try:
        yield
    except MlflowException as e:
        raise PlinthError(f"model registry: {e.message}") from e


def _check_name(name: str) -> None:
    if not _NAME_PATTERN.fullmatch(name):
        raise PlinthError(
            f"invalid model name '{name}'",
            fix="use letters, digits, '.', '_' or '-' (at most 100 characters)",
        )


def _as_uri(location: str) -> str:
    # A bare path would be taken relative to the process's working directory by MLflow.
    if urlparse(location).scheme:
        return location.rstrip("/")
    return Path(location).resolve().as_uri()


def _from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


def open_registry(stack) -> ModelRegistry:
    """The model library of a stack (`stack`: a platform_cli.spec.stack.Stack). A tracking server
    named by its cluster-internal address (http://mlflow.plinth-system.svc:5000, where every
    pod reaches the platform's server) is reached from this machine through a port forward to
    one of its pods, over the Kubernetes API the stack's context reaches: no ingress, no VPN."""
    uri = stack.tracking_uri
    parsed = urlparse(uri)
    if stack.role == "team" and parsed.scheme in ("http", "https") and parsed.hostname:
        from platform_cli.kube import KubeClient, PortForward, ready_pod, service_address

        internal = service_address(parsed.hostname)
        if internal is not None:
            service, namespace = internal
            client = KubeClient.for_stack(stack)
            forward = PortForward(client, namespace, ready_pod(client, namespace, service), parsed.port or (443 if parsed.scheme == "https" else 80))
            uri = parsed._replace(netloc=f"127.0.0.1:{forward.local_port}").geturl()
    return ModelRegistry(uri, stack.artifact_root)
