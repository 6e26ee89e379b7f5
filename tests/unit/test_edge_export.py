"""The pure parts of an edge export: golden hashing vectors, the manifest, the option checks."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import xxhash

from platform_cli.edge.export import check_options
from platform_cli.edge.golden import check_golden, golden_vectors, sample_values
from platform_cli.edge.manifest import MODEL_FILE, build_manifest, export_key, summary
from platform_cli.errors import PlinthError
from platform_cli.features import MISSING_TOKEN, CategoricalFeature, FeatureSpec, NumericFeature, TextFeature, transform

# Also the spec of the tiny model tests/integration/test_edge_export.py exports.
SPEC = FeatureSpec(
    categorical=[CategoricalFeature(name="user_id", buckets=50_000), CategoricalFeature(name="device", buckets=7)],
    numeric=[NumericFeature(name="price", mean=3.0, std=2.0, log1p=True)],
    text=[TextFeature(name="title", buckets=1000, max_tokens=6)],
    label="clicked",
    hashing="xxhash64",
)


def spark_pmod_xxhash64(token: str, buckets: int) -> int:
    """The xxhash64 rule written out independently of features/transform.py: XXH64 (seed 42) of
    the UTF-8 bytes, as a signed 64-bit integer, remainder taken non-negative."""
    unsigned = xxhash.xxh64_intdigest(token.encode("utf-8"), 42)
    signed = unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned
    return signed % buckets


def test_golden_vectors_cover_every_categorical_and_text_field_with_hard_cases():
    golden = golden_vectors(SPEC)
    assert golden["hashing"] == "xxhash64"
    assert set(golden["categorical"]) == {"user_id", "device"} and set(golden["text"]) == {"title"}
    values = [value for value, _ in golden["categorical"]["user_id"]["cases"]]
    assert len(values) >= 250
    for hard in ("", " ", "北京", "e\u0301", "👨\u200d👩\u200d👧", "a\u0000b", MISSING_TOKEN, None, True, 3.0, 2**63 - 1, -(2**63)):
        assert any(type(v) is type(hard) and v == hard for v in values), hard
    title = golden["text"]["title"]
    assert len(title["tokens"]) >= 100 and len(title["texts"]) >= 100
    # JSON-representable as written: a device reads the file, not Python objects
    assert json.loads(json.dumps(golden, ensure_ascii=False)) == golden


def test_golden_ids_are_the_xxhash64_rule_and_its_canonical_tokens():
    golden = golden_vectors(SPEC)
    for name, buckets in (("user_id", 50_000), ("device", 7)):
        ids = dict((json.dumps(v), i) for v, i in golden["categorical"][name]["cases"])
        for value in [v for v in sample_values() if isinstance(v, str)]:
            assert ids[json.dumps(value)] == spark_pmod_xxhash64(value, buckets), value
        # 3, 3.0 and "3" are one token; true is "true"; a missing value is the missing token
        assert ids["3.0"] == spark_pmod_xxhash64("3", buckets)
        assert ids["1000000000000000.0"] == spark_pmod_xxhash64("1000000000000000", buckets)
        assert ids["true"] == spark_pmod_xxhash64("true", buckets)
        assert ids["null"] == ids[json.dumps(MISSING_TOKEN)] == spark_pmod_xxhash64(MISSING_TOKEN, buckets)
        assert ids["-0.0"] == spark_pmod_xxhash64("0", buckets)
    tokens = dict(golden["text"]["title"]["tokens"])
    assert tokens["don't"] == spark_pmod_xxhash64("don't", 999) + 1
    assert all(1 <= i < 1000 for i in tokens.values())
    texts = {json.dumps(t): ids for t, ids in golden["text"]["title"]["texts"]}
    assert texts[json.dumps("Don't STOP me now!!")] == [tokens[w] for w in ("don't", "stop", "me", "now")]
    assert texts["null"] == [] and len(texts[json.dumps(" ".join(f"w{i}" for i in range(11)))]) == 6  # cut at max_tokens


def test_golden_ids_are_what_the_transform_gives_a_real_row():
    golden = golden_vectors(SPEC)
    for value, want in golden["categorical"]["device"]["cases"][::17]:
        row = {"user_id": "someone", "device": value, "price": 12.5, "title": "other words"}
        assert transform(SPEC, [row])["cat"][0, 1] == want


def test_golden_vectors_are_the_same_on_every_call_and_hold_for_this_transform():
    assert golden_vectors(SPEC) == golden_vectors(SPEC)
    assert check_golden(SPEC, golden_vectors(SPEC)) == []


def test_a_port_that_hashes_one_value_differently_is_named():
    golden = copy.deepcopy(golden_vectors(SPEC))
    golden["categorical"]["device"]["cases"][47][1] += 1
    golden["text"]["title"]["tokens"][3][1] += 1
    problems = check_golden(SPEC, golden)
    assert len(problems) == 2
    assert problems[0].startswith("device: ") and "the vectors say" in problems[0]
    assert problems[1].startswith("title: token ")


def test_vectors_for_another_hash_or_other_fields_are_refused_whole():
    siphash = SPEC.model_copy(update={"hashing": "siphash"})
    assert check_golden(siphash, golden_vectors(SPEC)) == ["hashing: the vectors are for 'xxhash64', the feature spec hashes with 'siphash'"]
    fewer = SPEC.model_copy(update={"categorical": SPEC.categorical[:1]})
    [problem] = check_golden(fewer, golden_vectors(SPEC))
    assert problem == "categorical fields: the vectors cover ['device', 'user_id'], the feature spec has ['user_id']"


def test_siphash_vectors_follow_the_siphash_transform():
    siphash = SPEC.model_copy(update={"hashing": "siphash", "text": []})
    golden = golden_vectors(siphash)
    assert golden["text"] == {} and "hash_array" in golden["rules"]["categorical"]
    [(value, want)] = [case for case in golden["categorical"]["user_id"]["cases"] if case[0] == "北京"]
    assert transform(siphash, [{"user_id": value, "device": "x", "price": 1.0}])["cat"][0, 0] == want


def manifest(quantization: str = "float16", model: bytes = b"tflite bytes") -> dict:
    io = {"inputs": [{"name": "cat", "dtype": "int64", "shape": [-1, 2]}], "outputs": [{"name": "probability", "dtype": "float32", "shape": [-1]}]}
    return build_manifest(model="ctr", version=3, run_id="abc", quantization=quantization, io=io,
                          contents={MODEL_FILE: model, "feature_spec.json": b"{}"}, savedmodel_bytes=48,
                          probe_rows=64, max_abs_diff=2.5e-4)


def test_manifest_states_files_sizes_quantization_and_agreement():
    m = manifest()
    assert m["source"] == {"model": "ctr", "version": 3, "uri": "models:/ctr/3", "run_id": "abc"}
    assert m["inputs"][0] == {"name": "cat", "dtype": "int64", "shape": [-1, 2]}
    assert m["files"][MODEL_FILE] == {"bytes": 12, "sha256": hashlib.sha256(b"tflite bytes").hexdigest()}
    assert m["sizes"] == {"tflite_bytes": 12, "savedmodel_bytes": 48, "ratio": 0.25}
    assert m["quantization"]["mode"] == "float16" and m["agreement"] == m["agreement"] | {"probe_rows": 64, "max_abs_diff": 2.5e-4}
    # pure: no clock, no machine in it, so a re-export writes the same bytes
    assert json.dumps(manifest()) == json.dumps(m)
    assert summary(m) == {"format": "tflite", "quantization": "float16", "bytes": 12,
                          "sha256": hashlib.sha256(b"tflite bytes").hexdigest(), "max_abs_diff": 2.5e-4}


def test_each_quantization_is_its_own_export():
    assert len({export_key("tflite", q) for q in ("none", "float16", "dynamic")}) == 3


@pytest.mark.parametrize(
    ("fmt", "quantization", "message"),
    [
        ("tflite", "int8", "quantize: 'int8' is not a quantization; use none, float16, dynamic"),
        ("onnx", "none", "format: 'onnx' is not an export format; use tflite"),
    ],
)
def test_unknown_options_name_the_field_and_the_choices(fmt, quantization, message):
    with pytest.raises(PlinthError) as raised:
        check_options(fmt, quantization)
    assert str(raised.value) == message
