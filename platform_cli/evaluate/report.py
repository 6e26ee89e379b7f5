"""The evaluation report: one self-contained HTML page (plots embedded as PNG) comparing a new
version with production, plus the plots as PNG files next to it."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

NEW_COLOUR, PRODUCTION_COLOUR = "#1f77b4", "#ff7f0e"


def write_report(evaluation: dict, directory: Path) -> Path:
    """Write report.html, roc.png, calibration.png and segments-<field>.png into directory."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = {"roc": _roc_figure(evaluation), "calibration": _calibration_figure(evaluation)}
    for field in evaluation["segments"]:
        figures[f"segments-{field}"] = _segment_figure(evaluation, field)
    images = {}
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        _close(figure)
        (directory / f"{name}.png").write_bytes(buffer.getvalue())
        images[name] = base64.b64encode(buffer.getvalue()).decode()
    path = directory / "report.html"
    path.write_text(_html(evaluation, images))
    return path


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display; set before pyplot is imported
    import matplotlib.pyplot as plt

    return plt


def _close(figure) -> None:
    _plt().close(figure)


def _label(evaluation: dict, which: str) -> str:
    if which == "new":
        return f"v{evaluation['version']} (new)"
    return f"v{evaluation['production_version']} (production)"


def _compared(evaluation: dict):
    yield "new", evaluation["new"], NEW_COLOUR
    if evaluation.get("production"):
        yield "production", evaluation["production"], PRODUCTION_COLOUR


def _roc_figure(evaluation: dict):
    plt = _plt()
    figure, axes = plt.subplots(figsize=(5, 4.5))
    for which, scores, colour in _compared(evaluation):
        if "roc_curve" in scores:
            axes.plot(scores["roc_curve"]["fpr"], scores["roc_curve"]["tpr"], color=colour, label=f"{_label(evaluation, which)}  AUC {scores['auc']:.4f}")
    axes.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="lower right", fontsize=8)
    return figure


def _calibration_figure(evaluation: dict):
    plt = _plt()
    figure, axes = plt.subplots(figsize=(5, 4.5))
    top = 0.0
    for which, scores, colour in _compared(evaluation):
        if "calibration_curve" in scores:
            curve = scores["calibration_curve"]
            axes.plot(curve["predicted"], curve["observed"], marker="o", color=colour, label=f"{_label(evaluation, which)}  ECE {scores['ece']:.4f}")
            top = max(top, *curve["predicted"], *curve["observed"])
    top = min(1.0, top * 1.1 or 1.0)
    axes.plot([0, top], [0, top], color="#999999", linestyle=":", linewidth=1, label="perfect calibration")
    axes.set(xlabel="mean predicted CTR (decile of predictions)", ylabel="observed CTR", title="Calibration", xlim=(0, top), ylim=(0, top))
    axes.legend(loc="upper left", fontsize=8)
    return figure


def _segment_figure(evaluation: dict, field: str):
    import numpy as np

    plt = _plt()
    new = evaluation["segments"][field]["new"]
    production = evaluation["segments"][field].get("production") or {}
    names = [name for name in new if new[name]["auc"] is not None][:12]
    figure, axes = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.8))
    x = np.arange(len(names))
    width = 0.38 if production else 0.6
    axes.bar(x - (width / 2 if production else 0), [new[n]["auc"] for n in names], width, color=NEW_COLOUR, label=_label(evaluation, "new"))
    if production:
        axes.bar(x + width / 2, [(production.get(n) or {}).get("auc") or 0 for n in names], width, color=PRODUCTION_COLOUR, label=_label(evaluation, "production"))
    values = [new[n]["auc"] for n in names] + [(production.get(n) or {})["auc"] for n in names if (production.get(n) or {}).get("auc") is not None]
    axes.set_ylim(max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.03))
    axes.set_xticks(x, names, rotation=30, ha="right")
    axes.set(ylabel="AUC", title=f"AUC by {field}")
    axes.legend(fontsize=8)
    return figure


def _html(evaluation: dict, images: dict[str, str]) -> str:
    e = html.escape
    new, production = evaluation["new"], evaluation.get("production")
    verdict = "better than production" if evaluation["better"] else "not better than production"
    rows = []
    for key, label, fmt in (("auc", "AUC", ".4f"), ("logloss", "log loss", ".4f"), ("calibration_ratio", "predicted / observed CTR", ".3f"), ("ece", "expected calibration error", ".4f"), ("ctr", "observed CTR", ".4f"), ("rows", "rows", "d")):
        a = new.get(key)
        b = production.get(key) if production else None
        delta = f"{a - b:+{fmt}}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and key != "rows" else ""
        rows.append(f"<tr><td>{e(label)}</td><td>{_fmt(a, fmt)}</td><td>{_fmt(b, fmt)}</td><td>{delta}</td></tr>")
    segment_tables = []
    for field, data in evaluation["segments"].items():
        body = []
        for name, scores in data["new"].items():
            other = (data.get("production") or {}).get(name) or {}
            delta = f"{scores['auc'] - other['auc']:+.4f}" if scores.get("auc") is not None and other.get("auc") is not None else ""
            body.append(f"<tr><td>{e(name)}</td><td>{scores['rows']}</td><td>{_fmt(scores['ctr'], '.4f')}</td><td>{_fmt(scores['auc'], '.4f')}</td><td>{_fmt(other.get('auc'), '.4f')}</td><td>{delta}</td><td>{_fmt(scores['calibration_ratio'], '.3f')}</td></tr>")
        segment_tables.append(
            f"<h2>By {e(field)}</h2><img src='data:image/png;base64,{images[f'segments-{field}']}' alt='AUC by {e(field)}'>"
            f"<table><tr><th>{e(field)}</th><th>rows</th><th>CTR</th><th>AUC new</th><th>AUC production</th><th>Δ AUC</th><th>calibration</th></tr>{''.join(body)}</table>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(evaluation['model'])} v{evaluation['version']} evaluation</title>
<style>
body {{ font-family: -apple-system, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ padding: 4px 12px; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} .verdict {{ font-size: 1.3em; padding: .6em 1em; border-radius: 6px; display: inline-block; }}
.better {{ background: #e3f4e1; }} .worse {{ background: #fbe9e7; }} .plots img {{ width: 48%; }} .note {{ color: #666; }}
</style></head><body>
<h1>{e(evaluation['model'])} v{evaluation['version']}: evaluation</h1>
<p class="verdict {'better' if evaluation['better'] else 'worse'}">v{evaluation['version']} is <b>{verdict}</b></p>
<p>{e(evaluation['reason'])}</p>
<p class="note">data: {e(evaluation['data'])} ({new['rows']} rows) · evaluated {e(evaluation['evaluated_at'])}</p>
<table><tr><th>metric</th><th>{e(_label(evaluation, 'new'))}</th><th>{e(_label(evaluation, 'production')) if production else 'production'}</th><th>Δ</th></tr>{''.join(rows)}</table>
<div class="plots"><img src="data:image/png;base64,{images['roc']}" alt="ROC curve"><img src="data:image/png;base64,{images['calibration']}" alt="calibration curve"></div>
{''.join(segment_tables)}
</body></html>
"""


def _fmt(value, fmt: str) -> str:
    if value is None:
        return "–"
    return format(value, fmt)
