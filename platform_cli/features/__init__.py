"""Feature transforms defined once and used both offline and online.

The model server applies `transform` to raw request rows, and the Spark preprocessing job computes
the same features with the spec compiled to Spark columns (features/spark.py), bit for bit:

    spec = FeatureSpec.load("model/feature_spec.json")
    inputs = transform(spec, [{"user_id": "u000042", "hour": 21, ...}])
    inputs["cat"]  # int64 [N, len(spec.categorical)], hashed ids in [0, buckets)
    inputs["num"]  # float32 [N, len(spec.numeric)], standardised

Importing this package loads only pydantic; numpy (and xxhash or pandas, by the spec's hash)
load on the first transform.
"""

from platform_cli.features.spec import SPEC_FILE, CategoricalFeature, FeatureSpec, NumericFeature, TextFeature
from platform_cli.features.transform import HASH_KEY, MISSING_TOKEN, Columns, transform

__all__ = [
    "HASH_KEY",
    "MISSING_TOKEN",
    "SPEC_FILE",
    "CategoricalFeature",
    "Columns",
    "FeatureSpec",
    "NumericFeature",
    "TextFeature",
    "transform",
]
