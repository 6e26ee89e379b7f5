"""Where a model's traffic split lives on disk, and the one way to change it.

Two writers share the file: the CLI (promote, rollout, ...) and the router (auto-rollback).
`update` holds an exclusive lock across read-modify-write so that neither loses the other's
change; the write itself is atomic, so the router's reload never sees half a file.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from platform_cli.atomic import write_text
from platform_cli.serving.traffic import TrafficState


def traffic_path(serving_dir: Path, model: str) -> Path:
    return Path(serving_dir) / "traffic" / f"{model}.json"


def saved_models(serving_dir: Path) -> list[str]:
    """Models that have a saved split under `serving_dir` (promoted at least once)."""
    return sorted(path.stem for path in (Path(serving_dir) / "traffic").glob("*.json"))


def load(path: Path, model: str) -> TrafficState:
    """The saved split, or an empty one (nothing served yet)."""
    path = Path(path)
    if not path.exists():
        return TrafficState(model=model)
    return TrafficState.model_validate_json(path.read_text())


def save(path: Path, state: TrafficState) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, state.model_dump_json(indent=2) + "\n")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update(path: Path, model: str, change: Callable[[TrafficState], TrafficState]) -> tuple[TrafficState, TrafficState]:
    """Apply `change` to the saved state under the lock; returns (before, after). Nothing is
    written if `change` raises or returns the state unchanged."""
    with locked(path):
        before = load(path, model)
        after = change(before)
        if after is not before:
            save(path, after)
        return before, after
