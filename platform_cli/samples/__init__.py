"""The sample library: named, versioned tables of training samples under the stack's storage.

A sample table is a Delta Lake table at `${storage}/samples/<name>` (a local path, or an
hdfs:// or s3:// URI on a cluster stack). Each version is one Delta commit; Plinth keeps what it
knows about the version (row count, per-column statistics, content digest, the job that wrote
it) in the commit's own entry of the Delta log, so the table stays a plain Delta table that
delta-rs and delta-spark read as it is.

Jobs refer to a version in args and env:

    ${samples.ctr@7}        version 7 of table ctr
    ${samples.ctr@latest}   its newest version when the job is submitted (pinned then, and
                            recorded in the job's record and the lineage of models it trains)

Both become a *version location*, `<table>@v<N>`: Delta's own time-travel path form, which a
job opens with platform_cli.samples.table.open_version (or delta-spark with
`spark.read.format("delta").load(location)`). A job writes a version by declaring
`output: {samples: NAME}` and writing Parquet files into `${sample_dir}`; when it succeeds the
platform commits them as the table's next version.

This module is the light part (names, references, locations) that rendering needs; the table
operations, which import deltalake and pyarrow, are in platform_cli.samples.table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel

from platform_cli import storage

# Table names become directory names and appear in `${samples.NAME@V}`.
TABLE_NAME_PATTERN = r"[a-z][a-z0-9_-]{0,62}"
SAMPLES_DIR = "samples"
LATEST = "latest"

# ${samples.NAME@VERSION}; a `$$` before it escapes it like any other variable.
REFERENCE = re.compile(r"(?<!\$)\$\{samples\.(?P<body>[^}]*)\}")
_BODY = re.compile(rf"(?P<name>{TABLE_NAME_PATTERN})@(?P<version>{LATEST}|[0-9]+)")
_VERSION_LOCATION = re.compile(r"^(?P<table>.+)@(?:v(?P<version>[0-9]+)|(?P<latest>latest))$")


@dataclass(frozen=True)
class SampleRef:
    """`ctr@7` or `ctr@latest` as a job spec writes it."""

    table: str
    version: int | None  # None: latest

    def __str__(self) -> str:
        return f"{self.table}@{LATEST if self.version is None else self.version}"


class SampleInput(BaseModel):
    """A version a job reads, as its record keeps it: pinned at submission (version and digest
    set) or, where the CLI does not read the stack's storage, `@latest` left to the job."""

    ref: str  # as the spec wrote it: ctr@latest, ctr@7
    table: str
    version: int | None = None
    location: str
    digest: str = ""
    rows: int | None = None

    @property
    def pinned(self) -> str:
        return f"{self.table}@{LATEST if self.version is None else self.version}"


class SampleOutput(BaseModel):
    """The table version a job writes: its files go to `dir`, committed when the job succeeds."""

    table: str
    location: str  # the table's location
    dir: str  # ${sample_dir}
    mode: str
    partition_by: str | None = None
    version: int | None = None  # set once committed
    digest: str = ""


def match_ref(text: str) -> SampleRef | None:
    """`NAME@VERSION` (`ctr@7`, `ctr@latest`) as a SampleRef, or None when it is not one."""
    match = _BODY.fullmatch(text)
    return SampleRef(match["name"], None if match["version"] == LATEST else int(match["version"])) if match else None


def parse_ref(body: str, field: str) -> SampleRef:
    """The inside of `${samples.NAME@VERSION}`, or an error naming `field`."""
    from platform_cli.errors import PlinthError, shown

    ref = match_ref(body)
    if ref is None:
        name = body.split("@", 1)[0] or "NAME"
        raise PlinthError(f"{field}: {shown('${samples.' + body + '}')} is not a sample reference",
                          f"write ${{samples.{name}@latest}} or ${{samples.{name}@N}} with a version number N (plinth data versions {name})")
    return ref


def references(value: str, field: str) -> list[SampleRef]:
    return [parse_ref(match["body"], field) for match in REFERENCE.finditer(value)]


def table_location(storage_root: str, table: str) -> str:
    return storage.join(storage_root, SAMPLES_DIR, table)


def job_sample_dir(table_location_: str, job_id: str) -> str:
    """Where job `job_id` writes its version of the table (`${sample_dir}`): a directory of its
    own inside the table, so a restart of the same submission rewrites its files and no one else's."""
    return f"{table_location_.rstrip('/')}/{job_id}"


def version_location(table_location_: str, version: int | None) -> str:
    return f"{table_location_}@{LATEST if version is None else f'v{version}'}"


def is_version_location(location: str) -> bool:
    """Whether `location` names a table version (`<table>@v7`, `<table>@latest`)."""
    return bool(_VERSION_LOCATION.match(location))


def split_location(location: str) -> tuple[str, int | None]:
    """`<table>@v7` -> (`<table>`, 7); `<table>@latest` or a bare table location -> (`<table>`, None)."""
    match = _VERSION_LOCATION.match(location)
    if not match:
        return location, None
    return match["table"], None if match["latest"] else int(match["version"])
