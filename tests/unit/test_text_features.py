"""Text fields in the shared transform: word tokens hashed into ids, padded, the same for every input shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from platform_cli.features import FeatureSpec, NumericFeature, TextFeature, transform

SPEC = FeatureSpec(
    categorical=[],
    numeric=[NumericFeature(name="links")],
    text=[TextFeature(name="text", buckets=1000, max_tokens=5), TextFeature(name="title", buckets=50, max_tokens=2, required=False)],
    label="spam",
)
ROWS = [
    {"text": "Free CASH, click now!! free", "title": "win", "links": 2},
    {"text": "free cash click now free extra words", "links": 0},
    {"text": None, "title": None, "links": 1},
]


def test_tokens_are_lower_cased_words_hashed_into_ids_then_padded():
    tokens = transform(SPEC, ROWS)["tokens"]
    assert tokens.dtype == np.int64 and tokens.shape == (3, 7)
    text, title = tokens[:, :5], tokens[:, 5:]
    # Case and punctuation do not matter; a repeated word has one id; only max_tokens are kept.
    assert text[0].tolist() == text[1].tolist()
    assert text[0][0] == text[0][4] and len(set(text[0].tolist())) == 4
    assert ((text[:2] >= 1) & (text[:2] < 1000)).all()
    assert title[0][0] >= 1 and title[0][1] == 0  # one word, then padding
    assert (title[1] == 0).all() and (tokens[2] == 0).all()  # absent optional field; null text


def test_text_ids_are_pinned():
    # Served models depend on these ids; change them only together with HASH_KEY.
    assert transform(SPEC, ROWS[:1])["tokens"].tolist() == [[282, 726, 702, 800, 282, 42, 0]]


def test_a_dataframe_gives_the_same_tokens_as_request_rows():
    frame = pd.DataFrame(ROWS)
    np.testing.assert_array_equal(transform(SPEC, frame)["tokens"], transform(SPEC, ROWS)["tokens"])


def test_a_spec_without_text_has_no_tokens_input_and_saves_as_before(tmp_path):
    plain = FeatureSpec(categorical=[], numeric=[NumericFeature(name="links")], label="spam")
    assert set(transform(plain, [{"links": 1}])) == {"cat", "num"}
    plain.save(tmp_path / "spec.json")
    assert '"text"' not in (tmp_path / "spec.json").read_text()
    assert FeatureSpec.load(tmp_path / "spec.json") == plain


@pytest.mark.parametrize(("row", "message"), [
    ({"links": 1}, "missing required field 'text'"),
    ({"text": 42, "links": 1}, "field 'text': expected text, got 42"),
])
def test_bad_text_is_a_clear_error(row, message):
    with pytest.raises(ValueError, match=message):
        transform(SPEC, [row])
