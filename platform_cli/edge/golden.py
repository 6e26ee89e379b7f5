"""Golden hashing vectors: raw values and the ids Plinth's feature transform gives them.

A model exported for a device takes ids, not raw values: the device hashes its own fields with
its own code (Java, Swift, C++) and the model is only right if that code gives Plinth's ids bit
for bit. The vectors are what it checks itself against, before it trusts a model:

    golden = golden_vectors(spec)        # JSON-ready: per categorical field value -> id,
                                         # per text field token -> id and text -> ids
    check_golden(spec, golden)           # [] when this process's transform agrees, else the mismatches

Every id is computed by `platform_cli.features.transform`, the code the model server and the
Spark job's bit-for-bit twin use, on rows that carry the sample values; nothing here hashes.
The samples cover what trips ports up: empty and blank strings, Unicode of many scripts
(combining marks, emoji sequences, case folding that changes length), numbers that must
canonicalise ("3", 3 and 3.0 are one token), booleans, missing values, 64-bit edges.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from platform_cli.features import MISSING_TOKEN, FeatureSpec, transform
from platform_cli.features.transform import HASH_KEY, WORD, XXHASH_SEED

if TYPE_CHECKING:
    import numpy as np

GOLDEN_FILE = "golden_vectors.json"

# Strings that have broken hashing ports: blanks, look-alikes of other tokens, every script
# class the word splitter treats differently, code points whose lower case is longer.
_FIXED_STRINGS = [
    "", " ", "  ", "\t", "\n", "0", "1", "-1", "00", "+1", "3.0", "1e3", "0x1F", "true", "True", "false",
    "null", "None", "NaN", "nan", "inf", "-0", MISSING_TOKEN, "u000042", "U000042", " u000042", "u000042 ",
    "a b", "a,b", "a\u0000b", "\\", '"', "'", "''", "it's", "DON'T", "snake_case_id", "camelCaseId",
    "id-with-dash", "a.b.c", "https://weibo.com/u/42?from=feed", "#热搜#", "@微博用户", "mixed中文English123",
    "北京", "微博", "端预测", "東京", "서울", "Москва", "Ελλάδα", "مرحبا", "שלום", "नमस्ते", "ภาษาไทย",
    "é", "e\u0301", "Å", "ß", "ẞ", "İstanbul", "ı", "ﬁ", "Ⅻ", "½", "٣", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "😀", "👍🏽",
    "👨\u200d👩\u200d👧", "🇨🇳", "\u200b", "\ufeff", "\u00a0", "x" * 1000,
]
# Values that are not strings: each must canonicalise to the token Plinth uses.
_FIXED_OTHERS: list[Any] = [
    0, 1, -1, 7, 42, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 10**20,
    3.0, -0.0, 1e15, -2.0, True, False, None,
]
_TEXTS = [
    "The quick brown fox", "Don't STOP me now!!", "微博 热搜 第一", "Ünïcödé wörds, and emoji 😀 between",
    "tabs\tand\nnewlines", "   ", "it's o'clock", "İSTANBUL ǅemal", "snake_case and kebab-case",
]
# Seeded: the same samples on every machine and run, so a re-export writes the same file.
_SEED = 20261130
_GENERATED_IDS = 120
_GENERATED_STRINGS = 80
_ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_' -.,"
             "微博用户热门推荐北京上海é ßÆøДжλπअआ한글ひらがなカタカナ😀🎉🔥")


def sample_values() -> list[Any]:
    """The raw categorical values the vectors cover (a few hundred, JSON-representable:
    lone surrogates and NaN are left out because JSON cannot carry them)."""
    rng = random.Random(_SEED)
    generated = [f"u{rng.randrange(10**6):06d}" for _ in range(_GENERATED_IDS // 2)]
    generated += [rng.randrange(-(10**12), 10**12) for _ in range(_GENERATED_IDS // 2)]
    generated += ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 12))) for _ in range(_GENERATED_STRINGS)]
    return [*_FIXED_STRINGS, *_FIXED_OTHERS, *generated]


def sample_texts(spec: FeatureSpec) -> list[str | None]:
    """Texts for the text fields: the sample strings, some sentences, a missing text, and one
    longer than the longest max_tokens (the cut-off)."""
    longest = max((f.max_tokens for f in spec.text), default=1)
    strings = [v for v in sample_values() if isinstance(v, str)]
    return [*_TEXTS, *strings, None, " ".join(f"w{i}" for i in range(longest + 5))]


def rules(spec: FeatureSpec) -> dict[str, str]:
    """How values become ids, in words a port can follow (features/transform.py is the definition)."""
    if spec.hashing == "xxhash64":
        hashed = (f"XXH64 of the token's UTF-8 bytes with seed {XXHASH_SEED}, read as a signed 64-bit integer, "
                  "then the remainder modulo B taken non-negative (Spark's pmod)")
    else:
        hashed = (f"pandas.util.hash_array over the token (encoding utf8, hash_key {HASH_KEY!r}, categorize=False), "
                  "an unsigned 64-bit integer, modulo B")
    return {
        "token": ("strings as they are; integers, booleans and integral floats in canonical form "
                  "(3, 3.0 and \"3\" are \"3\"; true is \"true\"); a missing value (null) is "
                  f"{MISSING_TOKEN!r}"),
        "categorical": f"id = hash(token) with B = buckets: {hashed}",
        "text": ("lower-case the text, split it into runs of Unicode letters, digits, '_' and \"'\" "
                 f"(regular expression {WORD.pattern}); each token's id is hash(token) with B = buckets - 1, plus 1; "
                 "the first max_tokens ids are kept and 0 pads the rest (listed here without the padding)"),
    }


def golden_vectors(spec: FeatureSpec) -> dict:
    """The vectors for every categorical and text field of the spec (JSON-ready)."""
    values = sample_values()
    cat = _categorical_ids(spec, values)
    golden: dict = {"hashing": spec.hashing, "rules": rules(spec), "categorical": {}, "text": {}}
    for j, feature in enumerate(spec.categorical):
        golden["categorical"][feature.name] = {
            "buckets": feature.buckets,
            "cases": [[value, int(id_)] for value, id_ in zip(values, cat[:, j])],
        }
    if spec.text:
        texts = sample_texts(spec)
        words = _words(texts)
        text_ids, word_ids = _text_ids(spec, texts), _text_ids(spec, words)
        for feature in spec.text:
            golden["text"][feature.name] = {
                "buckets": feature.buckets,
                "max_tokens": feature.max_tokens,
                "tokens": [[word, int(ids[0])] for word, ids in zip(words, word_ids[feature.name])],
                "texts": [[text, _unpadded(ids)] for text, ids in zip(texts, text_ids[feature.name])],
            }
    return golden


def case_count(golden: dict) -> int:
    """How many values, tokens and texts the vectors list."""
    return (sum(len(f["cases"]) for f in golden["categorical"].values())
            + sum(len(f["tokens"]) + len(f["texts"]) for f in golden["text"].values()))


def check_golden(spec: FeatureSpec, golden: dict) -> list[str]:
    """What this process's transform disagrees with in `golden`: one line per mismatch, [] if none."""
    problems = []
    if golden.get("hashing") != spec.hashing:
        problems.append(f"hashing: the vectors are for {golden.get('hashing')!r}, the feature spec hashes with {spec.hashing!r}")
        return problems
    expected_fields = ({f.name for f in spec.categorical}, {f.name for f in spec.text})
    found_fields = (set(golden.get("categorical", {})), set(golden.get("text", {})))
    for kind, expected, found in zip(("categorical", "text"), expected_fields, found_fields):
        if expected != found:
            problems.append(f"{kind} fields: the vectors cover {sorted(found)}, the feature spec has {sorted(expected)}")
    if problems:
        return problems
    for j, feature in enumerate(spec.categorical):
        cases = golden["categorical"][feature.name]["cases"]
        ids = _categorical_ids(spec, [value for value, _ in cases])[:, j]
        problems += [f"{feature.name}: {value!r:.60} -> {int(got)}, the vectors say {want}"
                     for (value, want), got in zip(cases, ids) if int(got) != want]
    for feature in spec.text:
        entry = golden["text"][feature.name]
        word_ids = _text_ids(spec, [word for word, _ in entry["tokens"]])[feature.name]
        problems += [f"{feature.name}: token {word!r:.60} -> {int(got[0])}, the vectors say {want}"
                     for (word, want), got in zip(entry["tokens"], word_ids) if int(got[0]) != want]
        text_ids = _text_ids(spec, [text for text, _ in entry["texts"]])[feature.name]
        problems += [f"{feature.name}: text {text!r:.60} -> {_unpadded(got)}, the vectors say {want}"
                     for (text, want), got in zip(entry["texts"], text_ids) if _unpadded(got) != want]
    return problems


def _rows(spec: FeatureSpec, n: int, categorical: list | None = None, text: list | None = None) -> list[dict]:
    """n rows with every field present: each categorical field (and each text field) carrying the
    row's sample value, numbers 0."""
    rows = []
    for i in range(n):
        row = {f.name: 0.0 for f in spec.numeric}
        row |= {f.name: categorical[i] if categorical is not None else MISSING_TOKEN for f in spec.categorical}
        row |= {f.name: text[i] if text is not None else None for f in spec.text}
        rows.append(row)
    return rows


def _categorical_ids(spec: FeatureSpec, values: list) -> np.ndarray:
    """int64 [len(values), n_categorical]: each value's id in every categorical field."""
    return transform(spec, _rows(spec, len(values), categorical=values))["cat"]


def _text_ids(spec: FeatureSpec, texts: list) -> dict[str, np.ndarray]:
    """{text field: int64 [len(texts), max_tokens]}: each text's token ids in every text field."""
    tokens = transform(spec, _rows(spec, len(texts), text=texts))["tokens"]
    ids, start = {}, 0
    for feature in spec.text:
        ids[feature.name] = tokens[:, start:start + feature.max_tokens]
        start += feature.max_tokens
    return ids


def _words(texts: list) -> list[str]:
    """The distinct word tokens of the texts, in order of appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in WORD.findall(text.lower()) if text else []:
            seen.setdefault(word, None)
    return list(seen)


def _unpadded(ids: np.ndarray) -> list[int]:
    return [int(i) for i in ids if i != 0]
