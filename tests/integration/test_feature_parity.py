"""Offline and online features are the same numbers: the Spark job's mapInPandas path and the
serving transformer give identical model inputs for the same raw rows.

Offline: examples/ctr/preprocess.py's own fit_spec and featurize on a real Spark session, over
the generator's rows written as Parquet (what the pipeline reads). Online: the KServe
transformer's preprocess() on the same rows as a client sends them, JSON with null for missing
values and plain integers. The transformer's predict (the forward to a TF Serving predictor)
is not exercised here; tests/unit/test_serving_render.py pins the container that runs it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest

from platform_cli.features import SPEC_FILE
from platform_cli.serving.transformer import FeatureTransformer
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"ctr_{name}", REPO / "examples" / "ctr" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _as_a_client_sends(value):
    """JSON as a client writes it: null for a missing value, 21 rather than 21.0."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_spark_job_and_serving_transformer_give_identical_model_inputs(tmp_path, monkeypatch):
    generate, preprocess = _example("generate"), _example("preprocess")
    raw = generate.generate(rows=600, users=60, items=50, seed=11)
    assert raw.isna().any().any(), "the rows must include missing values to compare their handling"
    generate.write(raw, tmp_path / "raw")

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # executors must import platform_cli
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        frame = spark.read.parquet(str(tmp_path / "raw")).coalesce(1)  # one partition: row order kept
        spec = preprocess.fit_spec(frame, buckets=1000)
        offline = preprocess.featurize(frame, spec).collect()
    finally:
        spark.stop()
    spec.save(tmp_path / SPEC_FILE)

    rows = [{k: _as_a_client_sends(v) for k, v in row.items()} for row in raw.to_dict("records")]
    rows = json.loads(json.dumps(rows))  # through the wire format
    transformer = FeatureTransformer("ctr-v1", tmp_path / SPEC_FILE, predictor_host=None)
    transformer.load()
    online = transformer.preprocess({"instances": rows})["instances"]

    assert len(online) == len(offline) == len(raw)
    assert [r["cat"] for r in online] == [list(r.cat) for r in offline]
    assert [r["num"] for r in online] == [list(r.num) for r in offline]  # float32 values, exactly
    # Not vacuous: the rows differ from each other and missing values took the fitted mean.
    assert len({tuple(r["cat"]) for r in online}) > len(online) // 2
    assert any(v == 0.0 for r in online for v in r["num"])
