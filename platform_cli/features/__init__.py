"""Feature transforms defined once and used both offline and online.

The Spark preprocessing job applies `transform` through `mapInPandas` and the model server applies
it to raw request rows, so training data and served requests go through the same code:

    spec = FeatureSpec.load("model/feature_spec.json")
    inputs = transform(spec, [{"user_id": "u000042", "hour": 21, ...}])
    inputs["cat"]  # int64 [N, len(spec.categorical)], hashed ids in [0, buckets)
    inputs["num"]  # float32 [N, len(spec.numeric)], standardised

Importing this package loads only pydantic; numpy and pandas load on the first transform.
"""

from platform_cli.features.spec import SPEC_FILE, CategoricalFeature, FeatureSpec, NumericFeature, TextFeature
from platform_cli.features.transform import HASH_KEY, MISSING_TOKEN, transform

__all__ = [
    "HASH_KEY",
    "MISSING_TOKEN",
    "SPEC_FILE",
    "CategoricalFeature",
    "FeatureSpec",
    "NumericFeature",
    "TextFeature",
    "transform",
]
