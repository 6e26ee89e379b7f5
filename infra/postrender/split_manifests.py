"""Helm post-renderers that split one chart's manifests between two releases by kind.

Helm pipes a release's rendered manifests (a YAML stream) to a post-renderer and applies what it
prints. `kserve-without-runtimes` drops the chart's ClusterServingRuntimes, `kserve-runtimes-only`
keeps only them, so the same chart, version and values install as two releases: the controller
and its webhooks first, the runtimes (which the webhook must admit) once the controller serves.

Standard library only: the Kubernetes provider runs these as plain executables, outside Plinth's
virtual environment. A document's kind is read from its top-level `kind:` line, as Helm writes
it (templates never indent top-level keys).
"""

from __future__ import annotations

import re
import sys

SEPARATOR = re.compile(r"^---[ \t]*(?:#.*)?$", re.MULTILINE)
KIND = re.compile(r"^kind:[ \t]*[\"']?([A-Za-z0-9]+)[\"']?[ \t]*$", re.MULTILINE)


def split(stream: str) -> list[str]:
    """The non-empty documents of a YAML stream, each as written."""
    return [doc.strip("\n") for doc in SEPARATOR.split(stream) if doc.strip() and not _only_comments(doc)]


def _only_comments(document: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in document.splitlines())


def kind_of(document: str) -> str | None:
    found = KIND.search(document)
    return found.group(1) if found else None


def select(stream: str, kinds: set[str], keep: bool) -> str:
    """The documents whose kind is in `kinds` (keep) or is not (drop), as a YAML stream."""
    chosen = [doc for doc in split(stream) if (kind_of(doc) in kinds) == keep]
    return "".join(f"---\n{doc}\n" for doc in chosen)


def main(kinds: set[str], keep: bool) -> None:
    sys.stdout.write(select(sys.stdin.read(), kinds, keep))
