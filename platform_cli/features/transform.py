"""transform(): raw rows -> model inputs, the one code path for training data and requests.

Rules, which the trained model depends on, so changing any of them needs a retrain:
- categorical values are strings, integers, booleans or integral floats, canonicalised to a
  token (3, 3.0 and "3" are all "3"; True is "true") and hashed with a keyed SipHash that does
  not depend on the process (unlike Python's salted hash()), then taken modulo the buckets.
  Integral floats matter: a nullable integer column arrives from Spark/Arrow as float64.
- missing categorical values (None/NaN, or an absent optional field) become MISSING_TOKEN;
- numeric values are optionally log1p'd, missing ones take the fitted mean, then
  (x - mean) / std;
- text values are lower-cased and split into word tokens (runs of letters, digits, '_' and
  apostrophes); each token is hashed like a categorical value into [1, buckets), the first
  max_tokens are kept, and 0 pads the rest (also for a missing text).
numpy and pandas are imported inside the functions so that importing this package stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from platform_cli.features.spec import CategoricalFeature, FeatureSpec, NumericFeature, TextFeature

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Part of the model contract: models trained with one key only understand ids hashed with it.
HASH_KEY = "plinth:features1"
MISSING_TOKEN = "__missing__"

_NUMERIC_KINDS = {"integer", "floating", "mixed-integer-float", "integer-na", "decimal", "empty"}


def transform(spec: FeatureSpec, rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Return {"cat": int64 [N, n_categorical], "num": float32 [N, n_numeric]} for `rows`, and
    "tokens": int64 [N, sum of max_tokens] when the spec has text fields.

    Raises ValueError naming the field when a required field is absent or a value has the wrong
    type; extra fields (the label, ids the model does not use) are ignored.
    """
    import numpy as np

    frame = _as_frame(spec, rows)
    n = len(frame)
    cat = np.empty((n, len(spec.categorical)), dtype=np.int64)
    for j, feature in enumerate(spec.categorical):
        cat[:, j] = _hash_ids(feature, frame.get(feature.name), n)
    num = np.empty((n, len(spec.numeric)), dtype=np.float32)
    for j, feature in enumerate(spec.numeric):
        num[:, j] = _standardise(feature, frame.get(feature.name), n)
    inputs = {"cat": cat, "num": num}
    if spec.text:
        inputs["tokens"] = np.concatenate([_token_ids(f, frame.get(f.name), n) for f in spec.text], axis=1)
    return inputs


def _as_frame(spec: FeatureSpec, rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    required = [f.name for f in [*spec.categorical, *spec.numeric, *spec.text] if f.required]
    if isinstance(rows, pd.DataFrame):
        for name in required:
            if name not in rows.columns:
                raise ValueError(f"missing required field {name!r}")
        return rows
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise ValueError(f"rows must be a DataFrame or a list of objects, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"row {i} must be an object of fields, got {type(row).__name__}")
        for name in required:
            if name not in row:
                raise ValueError(f"row {i}: missing required field {name!r}")
    # Only the columns the spec uses, built column by column so pandas infers each dtype the
    # same way it does for a DataFrame read from Parquet (ints with None become float64 + NaN).
    names = [f.name for f in [*spec.categorical, *spec.numeric, *spec.text]]
    present = [n for n in names if any(n in row for row in rows)]
    columns = {n: pd.Series([row.get(n) for row in rows]) for n in present}
    return pd.DataFrame(columns, index=range(len(rows)))


def _hash_ids(feature: CategoricalFeature, column: pd.Series | None, n: int) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if column is None:
        tokens = np.full(n, MISSING_TOKEN, dtype=object)
    else:
        missing = column.isna().to_numpy()
        values = column.to_numpy(dtype=object)
        if pd.api.types.infer_dtype(column, skipna=True) == "string":
            tokens = values.copy()
        else:
            tokens = np.array(
                [None if m else _token(feature.name, v) for v, m in zip(values, missing)], dtype=object
            )
        tokens[missing] = MISSING_TOKEN
    hashes = pd.util.hash_array(tokens, encoding="utf8", hash_key=HASH_KEY, categorize=False)
    return (hashes % np.uint64(feature.buckets)).astype(np.int64)


_WORD = re.compile(r"[\w']+")


def _token_ids(feature: TextFeature, column: pd.Series | None, n: int) -> np.ndarray:
    import numpy as np
    import pandas as pd

    ids = np.zeros((n, feature.max_tokens), dtype=np.int64)
    if column is None:
        return ids
    rows, positions, words = [], [], []
    for i, value in enumerate(column.to_numpy(dtype=object)):
        if value is None or (isinstance(value, float) and value != value):  # None or NaN: no tokens
            continue
        if not isinstance(value, str):
            raise ValueError(f"field {feature.name!r}: expected text, got {_show(value)}")
        for position, word in enumerate(_WORD.findall(value.lower())[: feature.max_tokens]):
            rows.append(i)
            positions.append(position)
            words.append(word)
    if words:
        hashes = pd.util.hash_array(np.array(words, dtype=object), encoding="utf8", hash_key=HASH_KEY, categorize=False)
        ids[rows, positions] = (hashes % np.uint64(feature.buckets - 1)).astype(np.int64) + 1
    return ids


def _token(name: str, value: Any) -> str:
    import numpy as np

    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    raise ValueError(f"field {name!r}: expected a string or integer, got {_show(value)}")


def _standardise(feature: NumericFeature, column: pd.Series | None, n: int) -> np.ndarray:
    import numpy as np

    if column is None:  # an absent optional field: every row takes the mean, i.e. 0 after scaling
        return np.zeros(n, dtype=np.float32)
    values = _numbers(feature.name, column)
    if feature.log1p:
        negative = values < 0
        if negative.any():
            raise ValueError(f"field {feature.name!r}: expected a number >= 0, got {_show(values[negative][0])}")
        values = np.log1p(values)
    values = np.where(np.isnan(values), feature.mean, values)
    return ((values - feature.mean) / feature.std).astype(np.float32)


def _numbers(name: str, column: pd.Series) -> np.ndarray:
    """The column as float64 with NaN for missing values; ValueError on anything not a number."""
    import numpy as np
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if not numeric and pd.api.types.infer_dtype(column, skipna=True) not in _NUMERIC_KINDS:
        present = column.dropna()
        bad = next((v for v in present if not _is_number(v)), present.iloc[0])
        raise ValueError(f"field {name!r}: expected a number, got {_show(bad)}")
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(values).any():
        raise ValueError(f"field {name!r}: expected a finite number, got {_show(values[np.isinf(values)][0])}")
    return values


def _is_number(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _show(value: Any) -> str:
    """A short repr for error messages: requests can carry arbitrarily large values."""
    text = repr(value.item() if hasattr(value, "item") else value)
    return text if len(text) <= 40 else text[:37] + "..."
