"""Model evaluation (模型评估): score a registered version on labelled raw data, compare it with
the production version on the same rows, keep the result with the version, write a report.

The version is scored through the model server's own code path (SavedModelPredictor:
feature_spec.json + platform_cli.features.transform + the SavedModel's serving signature), so
the evaluation sees exactly what serving would predict.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli.atomic import staged_dir, write_json
from platform_cli.errors import PlinthError

if TYPE_CHECKING:
    from platform_cli.spec.stack import Stack

PRODUCTION_ALIAS = "production"
PREDICT_BATCH = 4096


def evaluate_version(stack: Stack, name: str, version: int | None, data: str, segments: list[str], report_dir: Path | None = None) -> dict:
    from platform_cli.evaluate.metrics import score, segment_scores
    from platform_cli.evaluate.report import write_report
    from platform_cli.registry import open_registry

    frame = _read_rows(data)
    for field in segments:
        if field not in frame.columns:
            raise PlinthError(f"segments: {field!r} is not a column of the data", f"columns: {', '.join(map(str, frame.columns))}")
    registry = open_registry(stack)
    found = registry.get(name, version)
    production_version = registry.alias_version(name, PRODUCTION_ALIAS)
    new_p, label = _predict(name, registry.model_dir(name, found.version), frame)
    labels = frame[label].to_numpy(dtype="float64")
    evaluation: dict = {
        "model": name,
        "version": found.version,
        "data": data,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "production_version": production_version,
        "new": score(labels, new_p),
        "production": None,
        "segments": {field: {"new": segment_scores(labels, new_p, frame[field].to_numpy(dtype=object))} for field in segments},
    }
    if production_version is not None and production_version != found.version:
        production_p, _ = _predict(name, registry.model_dir(name, production_version), frame)
        evaluation["production"] = score(labels, production_p)
        for field in segments:
            evaluation["segments"][field]["production"] = segment_scores(labels, production_p, frame[field].to_numpy(dtype=object))
    evaluation["better"], evaluation["reason"] = _verdict(evaluation)
    directory = Path(report_dir or default_report_dir(stack, name, found.version))
    # A new evaluation replaces the last one whole: no figure of an earlier run is left behind.
    with staged_dir(directory) as staging:
        write_report(evaluation, staging)
        write_json(staging / "evaluation.json", evaluation)
    report = directory / "report.html"
    metrics = {k: evaluation["new"][k] for k in ("auc", "logloss", "calibration_ratio", "ece") if evaluation["new"].get(k) is not None}
    tags = {"data": data, "production_version": production_version or "none", "better": str(evaluation["better"]).lower(), "report": str(report)}
    registry.record_evaluation(name, found.version, metrics, tags, directory)
    return summary(evaluation, report)


def default_report_dir(stack: Stack, name: str, version: int) -> Path:
    return stack.home / "reports" / name / f"v{version}"


def read_evaluation(stack: Stack, name: str, version: int) -> dict | None:
    """The last evaluation of a version kept in its default report directory (curves included),
    or None if it was never evaluated there."""
    import json

    path = default_report_dir(stack, name, version) / "evaluation.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise PlinthError(f"{path} is not readable JSON ({exc})", "evaluate the version again") from None


def summary(evaluation: dict, report: Path) -> dict:
    """The flat result commands print and flow steps publish (curves stay in evaluation.json)."""
    new, production = evaluation["new"], evaluation["production"]
    return {
        "model": evaluation["model"],
        "version": evaluation["version"],
        "data": evaluation["data"],
        "rows": new["rows"],
        "auc": new["auc"],
        "logloss": new["logloss"],
        "calibration_ratio": new["calibration_ratio"],
        "ece": new.get("ece"),
        "production_version": evaluation["production_version"],
        "production_auc": production["auc"] if production else None,
        "production_logloss": production["logloss"] if production else None,
        "better": evaluation["better"],
        "reason": evaluation["reason"],
        "report": str(report),
        "segments": {field: {value: s["auc"] for value, s in data["new"].items()} for field, data in evaluation["segments"].items()},
    }


def _verdict(evaluation: dict) -> tuple[bool, str]:
    new, production = evaluation["new"], evaluation["production"]
    if evaluation["production_version"] is None:
        return True, "No version has the production alias yet, so this version is better by definition."
    if production is None:
        return False, f"v{evaluation['version']} is the production version itself."
    if new["auc"] is None or production["auc"] is None:
        return False, "The data has only one class, so AUC cannot compare the versions."
    better = new["auc"] > production["auc"]
    return better, f"On the same {new['rows']} rows, AUC {new['auc']:.4f} vs production v{evaluation['production_version']}'s {production['auc']:.4f} ({new['auc'] - production['auc']:+.4f}): " + ("higher, so better." if better else "not higher, so not better.")


def _read_rows(data: str):
    import pandas as pd

    path = Path(data)
    if "://" not in data and not path.exists():
        raise PlinthError(f"data: {data!r} not found", "pass a Parquet file or directory of labelled raw rows")
    try:
        frame = pd.read_parquet(data)
    except (OSError, ValueError) as exc:
        raise PlinthError(f"data: {data!r} is not readable as Parquet ({' '.join(str(exc).split())[:160]})") from None
    if frame.empty:
        raise PlinthError(f"data: {data!r} has no rows")
    return frame


def _predict(name: str, model_dir: Path, frame):
    """Probabilities for every row, through the model server's preprocess and predict."""
    import numpy as np
    from platform_cli.serving.inputs import InvalidInput
    from platform_cli.serving.server import SavedModelPredictor

    predictor = SavedModelPredictor(name, model_dir)
    predictor.load()
    label = predictor._spec.label  # noqa: SLF001 - the spec the server loaded, not a second copy
    if label not in frame.columns:
        raise PlinthError(f"the data has no label column {label!r}", "evaluate on labelled rows (raw impressions with clicks)")
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    predictions = []
    for start in range(0, len(rows), PREDICT_BATCH):
        try:
            inputs = predictor.preprocess({"instances": rows[start : start + PREDICT_BATCH]})
        except InvalidInput as exc:  # a row the model server would refuse (a 400)
            raise PlinthError(f"data: rows from {start}: {exc.reason}", "evaluate on raw rows with the fields of the model's feature_spec.json") from None
        predictions.extend(predictor.predict(inputs)["predictions"])
    return np.asarray(predictions), label
