"""The shared feature transform: stable ids, identical results for every input shape, clear errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from platform_cli.features import MISSING_TOKEN, SPEC_FILE, CategoricalFeature, Columns, FeatureSpec, NumericFeature, transform

SPEC = FeatureSpec(
    categorical=[
        CategoricalFeature(name="user_id", buckets=1000),
        CategoricalFeature(name="hour", buckets=100),
        CategoricalFeature(name="region", buckets=50, required=False),
    ],
    numeric=[
        NumericFeature(name="followers", mean=5.0, std=2.0, log1p=True),
        NumericFeature(name="age_hours", mean=24.0, std=12.0),
    ],
    label="clicked",
)
ROWS = [
    {"user_id": "u000001", "hour": 21, "region": "beijing", "followers": 150, "age_hours": 3.5, "clicked": 1},
    {"user_id": "u000002", "hour": None, "followers": None, "age_hours": 30},
    {"user_id": None, "hour": 4, "region": None, "followers": 0, "age_hours": None},
]


def test_outputs_have_the_model_input_shapes_and_dtypes():
    inputs = transform(SPEC, ROWS)
    assert inputs["cat"].dtype == np.int64 and inputs["cat"].shape == (3, 3)
    assert inputs["num"].dtype == np.float32 and inputs["num"].shape == (3, 2)
    assert (inputs["cat"] >= 0).all() and (inputs["cat"] < [1000, 100, 50]).all()


def test_hash_ids_are_pinned():
    # Served models depend on these exact ids: if a library upgrade changes them, every model
    # trained before it silently receives wrong inputs. Update only together with HASH_KEY.
    assert transform(SPEC, ROWS[:1])["cat"].tolist() == [[219, 29, 49]]


def test_hash_ids_are_stable_across_processes():
    script = (
        "import json, sys; from platform_cli.features import FeatureSpec, transform; "
        "spec = FeatureSpec.model_validate_json(sys.argv[1]); "
        "print(json.dumps(transform(spec, json.loads(sys.argv[2]))['cat'].tolist()))"
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script, SPEC.model_dump_json(), json.dumps(ROWS)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert json.loads(outputs[0]) == json.loads(outputs[1]) == transform(SPEC, ROWS)["cat"].tolist()


def test_dataframe_and_list_of_dicts_give_identical_outputs():
    # As Spark hands it over: a nullable integer column arrives as float64 with NaN.
    frame = pd.DataFrame(
        {
            "user_id": ["u000001", "u000002", None],
            "hour": [21.0, np.nan, 4.0],
            "region": ["beijing", None, None],
            "followers": [150.0, np.nan, 0.0],
            "age_hours": [3.5, 30.0, np.nan],
        }
    )
    from_rows, from_frame = transform(SPEC, ROWS), transform(SPEC, frame)
    np.testing.assert_array_equal(from_rows["cat"], from_frame["cat"])
    np.testing.assert_array_equal(from_rows["num"], from_frame["num"])


def test_columns_give_what_their_rows_give():
    # As the Open Inference Protocol sends them; a field absent from a part is missing in its rows.
    names = ["user_id", "hour", "region", "followers", "age_hours"]
    columns = Columns({name: [row.get(name) for row in ROWS] for name in names}, len(ROWS))
    assert columns.to_rows() == [{name: row.get(name) for name in names} for row in ROWS]
    for key, expected in transform(SPEC, ROWS).items():
        np.testing.assert_array_equal(transform(SPEC, columns)[key], expected)
    first = Columns({name: [ROWS[0][name]] for name in names}, 1)
    rest = Columns({name: [row.get(name) for row in ROWS[1:]] for name in names if name != "region"}, 2)
    joined = Columns.concat([first, rest])
    assert joined.rows == 3 and joined.values["region"] == ["beijing", None, None]
    for key, expected in transform(SPEC, ROWS).items():
        np.testing.assert_array_equal(transform(SPEC, joined)[key], expected)
    with pytest.raises(ValueError, match="missing required field 'hour'"):
        transform(SPEC, Columns({"user_id": ["u"], "followers": [1], "age_hours": [2]}, 1))


def test_integers_and_their_string_form_hash_alike():
    as_int = transform(SPEC, [{**ROWS[0], "hour": 21}])["cat"]
    as_str = transform(SPEC, [{**ROWS[0], "hour": "21"}])["cat"]
    np.testing.assert_array_equal(as_int, as_str)


def test_missing_values_take_the_missing_token_and_the_mean():
    inputs = transform(SPEC, ROWS)
    missing = transform(SPEC, [{"user_id": MISSING_TOKEN, "hour": MISSING_TOKEN, "followers": 1, "age_hours": 1}])
    assert inputs["cat"][2, 0] == missing["cat"][0, 0]  # user_id None
    assert inputs["cat"][1, 1] == missing["cat"][0, 1]  # hour None
    assert inputs["num"][1, 0] == 0.0 and inputs["num"][2, 1] == 0.0  # mean, standardised
    assert inputs["num"][0, 0] == pytest.approx((np.log1p(150) - 5.0) / 2.0)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"user_id": "u1", "hour": 1, "followers": 1}], "row 0: missing required field 'age_hours'"),
        (pd.DataFrame({"hour": [1], "followers": [1], "age_hours": [1]}), "missing required field 'user_id'"),
        ([{**ROWS[0], "followers": "many"}], "field 'followers': expected a number, got 'many'"),
        ([{**ROWS[0], "followers": True}], "field 'followers': expected a number, got True"),
        ([{**ROWS[0], "followers": -3}], "field 'followers': expected a number >= 0"),
        ([{**ROWS[0], "hour": 2.5}], "field 'hour': expected a string or integer, got 2.5"),
        ([{**ROWS[0], "user_id": {"id": 1}}], "field 'user_id': expected a string or integer"),
        ([ROWS[0], "not a row"], "row 1 must be an object of fields"),
    ],
)
def test_bad_input_raises_value_error_naming_the_field(rows, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        transform(SPEC, rows)


def test_feature_spec_json_round_trip(tmp_path):
    path = tmp_path / "feature_spec.json"
    SPEC.save(path)
    assert FeatureSpec.load(path) == SPEC
    assert json.loads(path.read_text())["label"] == "clicked"
    assert [p.name for p in tmp_path.iterdir()] == ["feature_spec.json"]  # no temp file left


def test_feature_spec_rejects_duplicate_names():
    with pytest.raises(ValueError, match="repeated: hour"):
        FeatureSpec(categorical=[CategoricalFeature(name="hour", buckets=10)],
                    numeric=[NumericFeature(name="hour")], label="clicked")


def test_feature_spec_round_trip_through_a_file_uri(tmp_path):
    """How preprocess.py writes and train.py reads the spec when ${storage} is a URI."""
    uri = f"file://{tmp_path}/features/{SPEC_FILE}"
    SPEC.save(uri)
    assert FeatureSpec.load(uri) == SPEC
    assert (tmp_path / "features" / SPEC_FILE).read_text() == SPEC.model_dump_json(indent=2, exclude={"text", "hashing"}) + "\n"
    assert [p.name for p in (tmp_path / "features").iterdir()] == [SPEC_FILE]
