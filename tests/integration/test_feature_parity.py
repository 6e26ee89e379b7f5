"""Offline and online features are the same numbers: the Spark job's compiled columns and the
serving transformer give identical model inputs for the same raw rows.

Offline: examples/ctr/preprocess.py's own fit_spec and featurize on a real Spark session, over
the generator's rows written as Parquet (what the pipeline reads). Online: the KServe
transformer's preprocess() on the same rows as a client sends them, JSON with null for missing
values and plain integers. The transformer's predict (the forward to a TF Serving predictor)
is not exercised here; tests/unit/test_serving_render.py pins the container that runs it.
Then the compiled columns of a spec with every kind of field against the serving transform,
over 12 000 rows with missing values, odd types and Unicode.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest

from platform_cli.features import SPEC_FILE, CategoricalFeature, FeatureSpec, NumericFeature, TextFeature
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


# -- the compiled Spark features against the serving transform, over many odd rows ---------------

# Words that exercise lower-casing and word splitting beyond ASCII: final sigma, dotted capital I,
# sharp s, CJK, emoji, Arabic, Devanagari with combining vowel signs, digits of other scripts,
# apostrophes and underscores, and separators that are not spaces.
WORDS = ["Free", "CASH", "ΟΔΟΣ", "İstanbul", "Straße", "日本語", "🎉🎉", "مرحبا", "हिन्दी", "٣٤٥",
         "it's", "snake_case", "x1", "CAFÉ", "naïve", "ǅemal", "Ⅻ", "ﬁne", "a\u200db", "—dash—", "tab\there"]
IDS = ["u000001", "用户42", "😀", "", "Ünïcödé", "zero\u200bwidth", "\u05e9\u05dc\u05d5\u05dd", "e\u0301", "NULL", "None", "__missing__"]

PARITY_SPEC = FeatureSpec(
    categorical=[CategoricalFeature(name="user_id", buckets=50_000), CategoricalFeature(name="hour", buckets=100),
                 CategoricalFeature(name="slot", buckets=1000), CategoricalFeature(name="is_new", buckets=10),
                 CategoricalFeature(name="code", buckets=7), CategoricalFeature(name="region", buckets=50, required=False)],
    numeric=[NumericFeature(name="followers", mean=3.2, std=1.7, log1p=True), NumericFeature(name="age_hours", mean=24.5, std=11.3),
             NumericFeature(name="score", mean=-0.25, std=0.3), NumericFeature(name="views", mean=1.0, std=2.0, required=False)],
    text=[TextFeature(name="text", buckets=5000, max_tokens=6), TextFeature(name="title", buckets=300, max_tokens=2, required=False)],
    label="clicked",
    hashing="xxhash64",
)


def _odd_rows(n: int, seed: int) -> list[dict]:
    """Raw rows with missing values in every field, Unicode everywhere text can be."""
    import random

    rng = random.Random(seed)

    def maybe(value, missing=0.1):
        return None if rng.random() < missing else value

    rows = []
    for i in range(n):
        rows.append({
            "row": i,
            "user_id": maybe(rng.choice(IDS) + (str(rng.randrange(100)) if rng.random() < 0.5 else "")),
            "hour": maybe(rng.randrange(-3, 24)),
            "slot": maybe(float(rng.randrange(-5, 2000))),
            "is_new": maybe(rng.random() < 0.5),
            "code": maybe(rng.randrange(-2**31, 2**31)),
            "followers": maybe(rng.choice([0, 1, 7, 150, 12_345, 2**40, rng.randrange(10**6)])),
            "age_hours": maybe(rng.choice([0.0, 0.5, 1e-9, 3.25, 1e12, -7.75, rng.uniform(-100, 100)])),
            "score": maybe(rng.choice([0.1, -0.3, 1e-30, 3.4e38, rng.uniform(-1, 1)])),
            "text": maybe(rng.choice([" ", "", "  ".join(rng.choice(WORDS) for _ in range(rng.randrange(12)))]), 0.15),
            "clicked": rng.random() < 0.3,
        })
    return rows


def _parquet_schema():
    import pyarrow as pa

    return pa.schema([("row", pa.int64()), ("user_id", pa.string()), ("hour", pa.int64()), ("slot", pa.float64()),
                      ("is_new", pa.bool_()), ("code", pa.int32()), ("followers", pa.int64()), ("age_hours", pa.float64()),
                      ("score", pa.float32()), ("text", pa.string()), ("clicked", pa.bool_())])


def _as_sent(row: dict, rng) -> dict:
    """One client's spelling of a row: integers also as strings or integral floats, an
    integral float category as an integer, booleans as they are."""
    sent = dict(row)
    for name in ("hour", "code"):
        if sent[name] is not None:
            sent[name] = rng.choice([sent[name], str(sent[name]), float(sent[name])])
    if sent["slot"] is not None:
        sent["slot"] = rng.choice([sent["slot"], int(sent["slot"]), str(int(sent["slot"]))])
    return sent


def test_spark_compiled_features_equal_the_serving_transform_bit_for_bit(tmp_path, monkeypatch):
    import random

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from platform_cli.features.spark import featurize
    from platform_cli.serving.transformer import request_inputs

    rows = _odd_rows(12_000, seed=5)
    table = pa.Table.from_pylist(rows, schema=_parquet_schema())
    # NaN, which Parquet keeps apart from null, is missing too.
    slot = table.column("slot").to_pylist()
    slot[1::97] = [float("nan")] * len(slot[1::97])
    table = table.set_column(3, "slot", pa.array(slot, pa.float64(), from_pandas=False))
    pq.write_table(table, tmp_path / "raw.parquet")

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        frame = spark.read.parquet(str(tmp_path / "raw.parquet"))
        offline = featurize(frame, PARITY_SPEC, keep=["row"]).orderBy("row").collect()
    finally:
        spark.stop()

    # Online: the rows as JSON, in requests of varying size, each row spelled as some client would.
    rng = random.Random(6)
    sent = json.loads(json.dumps([_as_sent({k: (None if k == "slot" and v != v else v) for k, v in row.items()}, rng)
                                  for row in table.to_pylist()]))
    online: dict[str, list] = {"cat": [], "num": [], "tokens": []}
    start = 0
    while start < len(sent):
        size = rng.choice([1, 2, 7, 64, 500])
        inputs = request_inputs(PARITY_SPEC, sent[start:start + size])
        for key in online:
            online[key].append(inputs[key])
        start += size
    online = {key: np.concatenate(parts) for key, parts in online.items()}

    assert len(offline) == len(rows) == len(online["cat"])
    np.testing.assert_array_equal(online["cat"], np.array([r.cat for r in offline], dtype=np.int64))
    # float32 compared bit for bit, not approximately
    np.testing.assert_array_equal(online["num"].view(np.int32), np.array([r.num for r in offline], dtype=np.float32).view(np.int32))
    np.testing.assert_array_equal(online["tokens"], np.array([r.tokens for r in offline], dtype=np.int64))
    # Not vacuous: missing values took the mean, ids spread, absent fields are constant, and the
    # rows' words differ.
    assert (online["num"][:, 0] == 0.0).sum() > 500 and (online["num"][:, 3] == 0.0).all()
    assert len(set(online["cat"][:, 0].tolist())) > 100 and len(set(online["cat"][:, 5].tolist())) == 1
    assert len({tuple(t) for t in online["tokens"][:, :6].tolist()}) > 2000 and (online["tokens"][:, 6:] == 0).all()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("slot", 2.5, "field 'slot': expected a string or integer"),
    ("followers", -3, "field 'followers': expected a number >= 0"),
])
def test_a_value_the_transform_refuses_fails_the_spark_job_too(tmp_path, field, value, message):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from platform_cli.features.spark import featurize
    from platform_cli.features import transform

    row = {**_odd_rows(1, seed=1)[0], field: value}
    with pytest.raises(ValueError, match=message):
        transform(PARITY_SPEC, [row])
    pq.write_table(pa.Table.from_pylist([row], schema=_parquet_schema()), tmp_path / "raw.parquet")
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
    try:
        with pytest.raises(Exception, match=message):
            featurize(spark.read.parquet(str(tmp_path / "raw.parquet")), PARITY_SPEC).collect()
    finally:
        spark.stop()
