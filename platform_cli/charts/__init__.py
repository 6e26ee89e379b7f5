"""What the engines' Helm charts read of the values a platform stack gives them, offline.

data/<chart>@<version>.json records, for each chart version Plinth pins and could fetch the
source of (scripts/vendor-chart-values), every values path the chart's templates reference and
every key its values.yaml sets. `plinth stack check` renders the stack's releases (the Pulumi
program under mocks: exactly the values `pulumi up` would send) and reads each key against that
record: a key no template reads is ignored by the engine, whatever the stack file promised.

A key counts as read when a template references it or one of its ancestors (a template that
passes `.Values.x` on whole, through `toYaml` or `with`, reads everything under it). That can
only err towards "read": an "ignored" verdict is certain for the recorded chart version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

DATA = Path(__file__).resolve().parent / "data"

Status = Literal["read", "ignored", "unverified"]


@dataclass(frozen=True)
class ChartRecord:
    chart: str
    version: str
    source: str          # Go module and folder the record was made from
    released: str | None # when that version was tagged upstream
    reads: frozenset[str]
    defaults: frozenset[str]


@dataclass(frozen=True)
class KeyCheck:
    release: str
    chart: str
    version: str
    key: str             # dotted values path, or "*" for a release nothing is known about
    status: Status
    note: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def chart_name(reference: str) -> str:
    """`kserve` for oci://ghcr.io/kserve/charts/kserve; a repository chart's name as it is."""
    return reference.rstrip("/").rsplit("/", 1)[-1]


@cache
def recorded_versions() -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for path in sorted(DATA.glob("*@*.json")):
        chart, _, version = path.stem.partition("@")
        found.setdefault(chart, []).append(version)
    return {chart: tuple(versions) for chart, versions in found.items()}


@cache
def chart_record(chart: str, version: str) -> ChartRecord | None:
    path = DATA / f"{chart}@{version}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return ChartRecord(data["chart"], data["version"], data["source"], data.get("released"), frozenset(data["reads"]), frozenset(data["defaults"]))


def value_paths(values: Any, prefix: str = "") -> list[str]:
    """The dotted paths of the values' leaves (a list or an empty map is a leaf)."""
    if isinstance(values, dict) and values:
        return [path for key, value in values.items() for path in value_paths(value, f"{prefix}.{key}" if prefix else str(key))]
    return [prefix] if prefix else []


def reader(path: str, reads: frozenset[str]) -> str | None:
    """The referenced path that reads `path`: itself or its nearest ancestor; None if none."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in reads:
            return candidate
    return None


def check_release(release: dict[str, Any]) -> list[KeyCheck]:
    """Each key of one Helm release's values (as `Rendering.releases()` gives them), read or not."""
    chart, version = chart_name(release["chart"]), str(release["version"])
    record = chart_record(chart, version)
    if record is None:
        known = recorded_versions().get(chart)
        why = f"no record of chart {chart} {version}" + (f" (recorded: {', '.join(known)})" if known else " (none of its versions is recorded)")
        return [KeyCheck(release["name"], chart, version, "*", "unverified", why)]
    checks = []
    for path in value_paths(release["values"]):
        found = reader(path, record.reads)
        if found is None:
            where = "not in its values.yaml either" if path not in record.defaults else "set in values.yaml, referenced by no template"
            checks.append(KeyCheck(release["name"], chart, version, path, "ignored", f"no template of {chart} {version} reads it ({where})"))
        else:
            note = "" if found == path else f"read as part of {found}"
            checks.append(KeyCheck(release["name"], chart, version, path, "read", note))
    return checks


def check_releases(releases: list[dict[str, Any]]) -> list[KeyCheck]:
    return [check for release in releases for check in check_release(release)]


def release_sources(releases: list[dict[str, Any]]) -> list[dict[str, str | None]]:
    """Each release's chart version and, where recorded, when it was tagged and where from."""
    rows = []
    for release in releases:
        chart, version = chart_name(release["chart"]), str(release["version"])
        record = chart_record(chart, version)
        rows.append({
            "release": release["name"], "chart": chart, "version": version,
            "released": record.released if record else None, "source": record.source if record else None,
            "values": str(len(value_paths(release["values"]))),
        })
    return rows
