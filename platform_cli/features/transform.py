"""transform(): raw rows -> model inputs, the one definition of features for training data and requests.

Rules, which the trained model depends on, so changing any of them needs a retrain:
- categorical values are strings, integers, booleans or integral floats, canonicalised to a
  token (3, 3.0 and "3" are all "3"; True is "true") and hashed into an id by the spec's hash
  (`FeatureSpec.hashing`), which never depends on the process (unlike Python's salted hash()):
  - "xxhash64": XXH64 of the token's UTF-8 bytes with seed 42, read as a signed 64-bit integer,
    then taken modulo the buckets to [0, buckets) -- Spark's pmod(xxhash64(token), buckets), so
    a Spark job computes the same ids with its own column functions (features/spark.py);
  - "siphash" (specs written before the choice existed): pandas' hash_array keyed with
    HASH_KEY, modulo the buckets.
  Integral floats matter: a nullable integer column arrives from Arrow/pandas as float64.
- missing categorical values (None/NaN, or an absent optional field) become MISSING_TOKEN;
- numeric values are optionally log1p'd, missing ones take the fitted mean, then
  (x - mean) / std, computed in float64 and rounded once to float32;
- text values are lower-cased and split into word tokens (runs of letters, digits, '_' and
  apostrophes); each token is hashed like a categorical value into [1, buckets), the first
  max_tokens are kept, and 0 pads the rest (also for a missing text).

The transform works column by column on plain numpy arrays: a field's values across the batch
are checked and canonicalised once, hashed or scaled as one array. No DataFrame is built, so a
one-row request costs tens of microseconds and a batch of rows costs little more per row.
numpy is imported inside the functions so that importing this package stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from numbers import Real
from typing import TYPE_CHECKING, Any

from platform_cli.features.spec import FeatureSpec, TextFeature

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Part of the "siphash" model contract: models trained with one key only understand ids hashed with it.
HASH_KEY = "plinth:features1"
# Part of the "xxhash64" contract: the seed of Spark's xxhash64().
XXHASH_SEED = 42
MISSING_TOKEN = "__missing__"
# Runs of letters, digits, '_' and apostrophes (Python's \w on str is Unicode: letters and digits
# of every script). features/spark.py spells the same class for Java's regex engine.
WORD = re.compile(r"[\w']+")


@dataclass(slots=True)  # not frozen: made once per request, and a frozen dataclass costs three times as much to make
class Columns:
    """Rows held column by column, {field: its values, one per row}, as the Open Inference
    Protocol sends them: the transform takes them without building a dict per row. A field
    that is absent is missing in every row. len() is the number of rows."""

    values: dict[str, list]
    rows: int

    def __len__(self) -> int:
        return self.rows

    def to_rows(self) -> list[dict]:
        names = list(self.values)
        return [dict(zip(names, values)) for values in zip(*self.values.values())]

    @staticmethod
    def concat(parts: Sequence[Columns]) -> Columns:
        """The rows of all parts, in order (a field some parts lack is missing in their rows)."""
        names = dict.fromkeys(name for part in parts for name in part.values)
        values: dict[str, list] = {name: [] for name in names}
        for part in parts:
            for name, column in values.items():
                given = part.values.get(name)
                column.extend([None] * part.rows if given is None else given)
        return Columns(values, sum(part.rows for part in parts))


def transform(spec: FeatureSpec, rows: pd.DataFrame | Sequence[Mapping[str, Any]] | Columns) -> dict[str, np.ndarray]:
    """Return {"cat": int64 [N, n_categorical], "num": float32 [N, n_numeric]} for `rows`, and
    "tokens": int64 [N, sum of max_tokens] when the spec has text fields.

    rows: a list of objects (a request's instances), Columns (a v2 request's inputs) or a pandas
    DataFrame (training data).
    Raises ValueError naming the field when a required field is absent or a value has the wrong
    type; extra fields (the label, ids the model does not use) are ignored.
    """
    import numpy as np

    columns, n = _columns(spec, rows)
    inputs = {"cat": _hash_ids(spec, columns, n), "num": _standardise(spec, columns, n)}
    if spec.text:
        inputs["tokens"] = np.concatenate([_token_ids(spec.hashing, f, columns.get(f.name), n) for f in spec.text], axis=1)
    return inputs


def _columns(spec: FeatureSpec, rows: Any) -> tuple[dict[str, list], int]:
    """{field: its values as a list, None for missing} for the fields the spec uses and the rows
    carry, and the number of rows."""
    features = [*spec.categorical, *spec.numeric, *spec.text]
    required = [f.name for f in features if f.required]
    if type(rows) is Columns:
        for name in required:
            if name not in rows.values:
                raise ValueError(f"missing required field {name!r}")
        return {f.name: rows.values[f.name] for f in features if f.name in rows.values}, rows.rows
    if hasattr(rows, "columns") and hasattr(rows, "to_numpy"):  # a pandas DataFrame
        for name in required:
            if name not in rows.columns:
                raise ValueError(f"missing required field {name!r}")
        return {f.name: _frame_values(rows[f.name]) for f in features if f.name in rows.columns}, len(rows)
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise ValueError(f"rows must be a DataFrame or a list of objects, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {i} must be an object of fields, got {type(row).__name__}")
        for name in required:
            if name not in row:
                raise ValueError(f"row {i}: missing required field {name!r}")
    columns = {}
    for feature in features:
        if feature.required or any(feature.name in row for row in rows):
            columns[feature.name] = [row.get(feature.name) for row in rows]
    return columns, len(rows)


def _frame_values(column: pd.Series) -> list:
    """A DataFrame column as Python values, every kind of missing (NaN, NA, NaT) as None."""
    return column.astype(object).where(column.notna(), None).tolist()


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _tokens(name: str, values: list) -> list[str]:
    """Each value's canonical token (MISSING_TOKEN for a missing one); ValueError on a value
    that is not a string, an integer, a boolean or an integral float."""
    tokens = []
    for value in values:  # the JSON types first, one type check each
        kind = type(value)
        if kind is str:
            tokens.append(value)
        elif kind is int:
            tokens.append(str(value))
        else:
            tokens.append(_token(name, value))
    return tokens


def _token(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if _is_missing(value) or _is_missing(_item(value)):
        return MISSING_TOKEN
    value = _item(value)  # numpy scalars (from a DataFrame) as Python ones
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise ValueError(f"field {name!r}: expected a string or integer, got {_show(value)}")


def _item(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def _hash(hashing: str, tokens: list[str], buckets: int | np.ndarray) -> np.ndarray:
    """Ids in [0, buckets) for tokens, by the spec's hash (buckets: one count, or one per token)."""
    import numpy as np

    if hashing == "xxhash64":
        from xxhash import xxh64_intdigest

        hashes = np.fromiter((xxh64_intdigest(t.encode("utf-8"), XXHASH_SEED) for t in tokens), dtype=np.uint64, count=len(tokens))
        # Spark's pmod on the signed value: the remainder with the divisor's (positive) sign.
        return np.mod(hashes.view(np.int64), buckets)
    import pandas as pd

    hashes = pd.util.hash_array(np.array(tokens, dtype=object), encoding="utf8", hash_key=HASH_KEY, categorize=False)
    return (hashes % np.asarray(buckets, dtype=np.uint64)).astype(np.int64)


def _hash_ids(spec: FeatureSpec, columns: dict[str, list], n: int) -> np.ndarray:
    """All categorical ids at once: one hash call over every field's tokens, then each field's
    column modulo its own buckets."""
    import numpy as np

    tokens: list[str] = []
    for feature in spec.categorical:
        values = columns.get(feature.name)
        tokens += [MISSING_TOKEN] * n if values is None else _tokens(feature.name, values)
    buckets = np.repeat(np.array([f.buckets for f in spec.categorical], dtype=np.int64), n)
    return np.ascontiguousarray(_hash(spec.hashing, tokens, buckets).reshape(len(spec.categorical), n).T)


def _token_ids(hashing: str, feature: TextFeature, values: list | None, n: int) -> np.ndarray:
    import numpy as np

    ids = np.zeros((n, feature.max_tokens), dtype=np.int64)
    if values is None:
        return ids
    rows, positions, words = [], [], []
    for i, value in enumerate(values):
        if _is_missing(value):  # no tokens
            continue
        if not isinstance(value, str):
            raise ValueError(f"field {feature.name!r}: expected text, got {_show(value)}")
        for position, word in enumerate(WORD.findall(value.lower())[: feature.max_tokens]):
            rows.append(i)
            positions.append(position)
            words.append(word)
    if words:
        ids[rows, positions] = _hash(hashing, words, feature.buckets - 1) + 1
    return ids


def _standardise(spec: FeatureSpec, columns: dict[str, list], n: int) -> np.ndarray:
    """All numeric fields at once: a float64 [n_numeric, N] matrix, log1p where set, missing
    values to the mean, scaled, rounded once to float32."""
    import numpy as np

    features = spec.numeric
    numbers = np.empty((len(features), n), dtype=np.float64)
    for j, feature in enumerate(features):
        values = columns.get(feature.name)
        # An absent optional field: every row takes the mean, i.e. 0 after scaling.
        numbers[j] = math.nan if values is None else _numbers(feature.name, values)
    logged = [j for j, f in enumerate(features) if f.log1p]
    if logged:
        negative = numbers[logged] < 0
        if negative.any():
            j, i = np.argwhere(negative)[0]
            raise ValueError(f"field {features[logged[j]].name!r}: expected a number >= 0, got {_show(numbers[logged[j], i])}")
        numbers[logged] = np.log1p(numbers[logged])
    mean = np.array([f.mean for f in features], dtype=np.float64)[:, None]
    std = np.array([f.std for f in features], dtype=np.float64)[:, None]
    numbers = np.where(np.isnan(numbers), mean, numbers)
    with np.errstate(over="ignore"):  # beyond float32's range is inf, as in Spark's cast
        return ((numbers - mean) / std).astype(np.float32).T.copy()


def _numbers(name: str, values: list) -> list[float]:
    """The values as floats with NaN for missing ones; ValueError on anything not a finite number."""
    numbers = []
    for value in values:
        kind = type(value)
        if kind is int or kind is float:  # what JSON gives: no further checks
            number = float(value)
        elif value is None:
            number = math.nan
        elif _is_number(value):
            number = float(value)
        else:
            raise ValueError(f"field {name!r}: expected a number, got {_show(value)}")
        if math.isinf(number):
            raise ValueError(f"field {name!r}: expected a finite number, got {_show(value)}")
        numbers.append(number)
    return numbers


def _is_number(value: Any) -> bool:
    # Real covers int, float and numpy's numbers; Decimal (a Parquet decimal column) is not a Real.
    # Booleans are not numbers here: True is not a count.
    return (isinstance(value, (Real, Decimal)) and not isinstance(value, bool)
            and not (hasattr(value, "dtype") and value.dtype.kind == "b"))


def _show(value: Any) -> str:
    """A short repr for error messages: requests can carry arbitrarily large values."""
    text = repr(_item(value))
    return text if len(text) <= 40 else text[:37] + "..."

