"""The feature spec compiled to Spark column expressions: transform() without Python workers.

    from platform_cli.features.spark import featurize
    features = featurize(spark.read.parquet(raw), spec)   # columns cat, num (and tokens)

Every rule of features/transform.py is spelled with Spark's own functions, chosen by each
column's Spark type when the plan is built, so the JVM computes the features and no row is
shipped to Python. The ids and values are the ones transform() gives for the same rows, bit for
bit (tests/integration/test_feature_parity.py runs both over the same rows):

- ids: pmod(xxhash64(token), buckets); Spark's xxhash64 is XXH64 with seed 42, which is why a
  spec compiled here must use hashing "xxhash64";
- tokens: strings as they are, integers as decimal digits, booleans as "true"/"false",
  integral floats as their integer; missing (null, NaN) as MISSING_TOKEN;
- numbers: cast to double, log1p, missing to the mean, (x - mean) / std, cast to float;
- text: lower(), then the runs of letters, digits, '_' and "'" (Python's Unicode \\w spelled for
  Java's regex engine), the first max_tokens hashed into [1, buckets), padded with 0.

A value transform() would refuse (2.5 as a category, a negative count under log1p, an infinite
number) fails the Spark job with the same message; a column whose type can never be valid is a
ValueError before anything runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_cli.features.spec import CategoricalFeature, FeatureSpec, NumericFeature, TextFeature
from platform_cli.features.transform import MISSING_TOKEN

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Python's str pattern [\w']+ : \w is a letter (L*), a digit or number (N*) or '_'.
JAVA_WORD = r"[\p{L}\p{N}_']+"


def featurize(frame: DataFrame, spec: FeatureSpec, keep: list[str] | tuple[str, ...] = ()) -> DataFrame:
    """`frame` with the model inputs as columns cat array<bigint>, num array<float> (and tokens
    array<bigint> for a spec with text fields), plus the columns named in `keep`."""
    return frame.select(*keep, *[column.alias(name) for name, column in columns(spec, frame).items()])


def columns(spec: FeatureSpec, frame: DataFrame) -> dict[str, Column]:
    """{"cat": ..., "num": ..., "tokens": ...}: the model inputs as Spark columns over `frame`."""
    from pyspark.sql import functions as F

    if spec.hashing != "xxhash64":
        raise ValueError(f"a feature spec compiled to Spark must hash with xxhash64 (Spark's own), this one uses {spec.hashing}")
    types = {field.name: field.dataType for field in frame.schema.fields}
    for feature in [*spec.categorical, *spec.numeric, *spec.text]:
        if feature.required and feature.name not in types:
            raise ValueError(f"missing required field {feature.name!r}")
    compiled = {
        "cat": F.array(*[_category_id(f, types.get(f.name)) for f in spec.categorical]),
        "num": F.array(*[_standardised(f, types.get(f.name)) for f in spec.numeric]),
    }
    if spec.text:
        compiled["tokens"] = F.concat(*[_token_ids(f, types.get(f.name)) for f in spec.text])
    return compiled


def _bucket(token: Column, buckets: int) -> Column:
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(token), F.lit(buckets).cast("bigint"))


def _fail(message: str) -> Column:
    from pyspark.sql import functions as F

    return F.raise_error(F.lit(message))


def _category_id(feature: CategoricalFeature, kind) -> Column:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    column = F.col(feature.name)
    if kind is None:  # an absent optional field
        token = F.lit(MISSING_TOKEN)
    elif isinstance(kind, T.StringType):
        token = column
    elif isinstance(kind, T.IntegralType):
        token = column.cast("string")
    elif isinstance(kind, T.BooleanType):
        token = F.when(column, F.lit("true")).when(~column, F.lit("false"))
    elif isinstance(kind, (T.FloatType, T.DoubleType, T.DecimalType)):
        number = column.cast("double")
        integral = F.when(number % 1 == 0, number.cast("decimal(38,0)").cast("string"))
        token = F.when(F.isnan(number), F.lit(None)).otherwise(
            F.coalesce(integral, F.when(column.isNotNull(), _fail(f"field {feature.name!r}: expected a string or integer, got a fraction"))))
    else:
        raise ValueError(f"field {feature.name!r}: expected a string or integer column, got {kind.simpleString()}")
    return _bucket(F.coalesce(token, F.lit(MISSING_TOKEN)), feature.buckets)


def _standardised(feature: NumericFeature, kind) -> Column:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if kind is None:  # an absent optional field: the mean, i.e. 0 after scaling
        return F.lit(0.0).cast("float")
    if not isinstance(kind, T.NumericType):
        raise ValueError(f"field {feature.name!r}: expected a number column, got {kind.simpleString()}")
    x = F.col(feature.name).cast("double")
    missing = x.isNull() | F.isnan(x)
    infinite = F.abs(x) == F.lit(float("inf"))
    value = F.log1p(x) if feature.log1p else x
    checked = F.when(infinite, _fail(f"field {feature.name!r}: expected a finite number"))
    if feature.log1p:
        checked = checked.when(x < 0, _fail(f"field {feature.name!r}: expected a number >= 0"))
    value = F.when(missing, F.lit(feature.mean)).otherwise(F.coalesce(checked, value))
    return ((value - F.lit(feature.mean)) / F.lit(feature.std)).cast("float")


def _token_ids(feature: TextFeature, kind) -> Column:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    padding = F.array_repeat(F.lit(0).cast("bigint"), feature.max_tokens)
    if kind is None:
        return padding
    if not isinstance(kind, T.StringType):
        raise ValueError(f"field {feature.name!r}: expected a text column, got {kind.simpleString()}")
    words = F.slice(F.regexp_extract_all(F.lower(F.col(feature.name)), F.lit(JAVA_WORD), 0), 1, feature.max_tokens)
    ids = F.transform(words, lambda word: _bucket(word, feature.buckets - 1) + 1)
    padded = F.concat(ids, F.array_repeat(F.lit(0).cast("bigint"), F.lit(feature.max_tokens) - F.size(ids)))
    return F.coalesce(padded, padding)
