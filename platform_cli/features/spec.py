"""FeatureSpec: the fitted, JSON-serialisable description of a model's inputs.

The Spark job fits it (numeric mean/std on the train split) and writes it next to the features;
training copies it into the exported model, so the model server transforms requests with exactly
the statistics the model was trained on.
"""

from __future__ import annotations

import os

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from platform_cli import storage
from platform_cli.features.online import OnlineSource

# The spec's file name wherever it travels: next to the features, inside an exported model.
SPEC_FILE = "feature_spec.json"


class CategoricalFeature(BaseModel):
    """A raw string/integer field, hashed into `buckets` ids."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    buckets: int = Field(ge=2)
    # A required field must be present in the input (its value may still be null); an optional
    # one may be absent altogether and is then treated as missing in every row.
    required: bool = True


class NumericFeature(BaseModel):
    """A raw number, optionally log1p-compressed, then standardised with the fitted mean/std.

    mean and std are statistics of the value *after* log1p when log1p is set.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    mean: float = Field(default=0.0, allow_inf_nan=False)
    std: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    log1p: bool = False
    required: bool = True
    # Served from an online store (features/online.py): the server fetches the value by the
    # row's entity key and sets it before the transform; training joins it point in time.
    online: OnlineSource | None = None

    @model_serializer(mode="wrap")
    def _online_only_when_set(self, handler):
        # Only online features say so: every other spec stays byte for byte what it was.
        data = handler(self)
        if data.get("online", 0) is None:
            del data["online"]
        return data


class TextFeature(BaseModel):
    """Free text, split into lower-case word tokens, each hashed into [1, buckets); the first
    max_tokens tokens are kept and the rest of the row is padded with 0 (no token)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    buckets: int = Field(ge=2)
    max_tokens: int = Field(ge=1, le=4096)
    required: bool = True


class FeatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    categorical: list[CategoricalFeature]
    numeric: list[NumericFeature]
    # Models with text fields take a third input, "tokens"; specs without any leave it out.
    text: list[TextFeature] = Field(default_factory=list)
    label: str = Field(min_length=1)
    # How categorical values and words become ids (see features/transform.py). "xxhash64" is
    # Spark's own xxhash64, so a Spark job computes features with native column functions;
    # "siphash" is what specs written before this field meant, and stays their meaning.
    hashing: Literal["siphash", "xxhash64"] = "siphash"

    @model_validator(mode="after")
    def _names_are_unique(self) -> FeatureSpec:
        names = [f.name for f in [*self.categorical, *self.numeric, *self.text]]
        if not names:
            raise ValueError("a feature spec needs at least one categorical, numeric or text field")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"feature names must be unique, repeated: {', '.join(duplicates)}")
        if self.label in names:
            raise ValueError(f"label {self.label!r} is also listed as a feature")
        return self

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureSpec:
        """From a local path or a URI (file://, hdfs://, s3://): see platform_cli.storage."""
        return cls.model_validate_json(storage.read_text(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the spec as JSON, atomically: readers never see a half-written file."""
        # Without text fields, and with the first hash, the file is exactly what it was before
        # those fields existed.
        exclude = ({"text"} if not self.text else set()) | ({"hashing"} if self.hashing == "siphash" else set())
        storage.write_text(path, self.model_dump_json(indent=2, exclude=exclude) + "\n")
