"""The model library (MLflow model registry). Importing this package imports MLflow."""

from platform_cli.registry.library import ModelRegistry, ModelSummary, ModelVersion

__all__ = ["ModelRegistry", "ModelSummary", "ModelVersion"]
