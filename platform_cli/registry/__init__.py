"""The model library (MLflow model registry) and where its versions come from (lineage).

`from platform_cli.registry import ModelRegistry` imports MLflow; `platform_cli.registry.lineage`
does not (the targets import it when a job is submitted), so the library is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from platform_cli.registry.library import ModelRegistry, ModelSummary, ModelVersion, open_registry

__all__ = ["ModelRegistry", "ModelSummary", "ModelVersion", "open_registry"]


def __getattr__(name: str):
    if name in __all__:
        from platform_cli.registry import library

        return getattr(library, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
