"""Turn raw CTR impressions into model-ready features with Spark.

    spark-submit --master local[2] preprocess.py --raw data/raw --out data/features

1. splits the impressions into train/eval deterministically, by a seeded hash of impression_id;
2. fits the numeric statistics (mean/std, after log1p where set) on the train split only, with
   Spark aggregations, and builds the FeatureSpec;
3. computes the features of both splits with Spark's own column functions: the FeatureSpec
   compiled by platform_cli.features.spark, which gives bit for bit what the model server's
   transform (platform_cli.features.transform) gives for the same rows, without shipping a row
   to Python.

Output (built in a temporary directory next to --out, then renamed into place; on an object
store written in place with a _SUCCESS marker last, see platform_cli.storage):
    OUT/train/, OUT/eval/   Parquet with columns
                              cat   array<bigint>  hashed ids, one per FeatureSpec.categorical
                              num   array<float>   standardised values, one per FeatureSpec.numeric
                              label float          1.0 clicked, 0.0 not
                            i.e. exactly the inputs of the model's serving signature, plus the label
    OUT/feature_spec.json   the fitted FeatureSpec

--raw and --out are local paths or URIs (hdfs:// or s3:// on a cluster stack): Spark reads and
writes them itself (s3:// needs Hadoop's S3A connector mapped to it, fs.s3.impl); a URI --raw
must carry the generator's _SUCCESS marker.
"""

from __future__ import annotations

import argparse
import json
import time

from platform_cli import storage
from platform_cli.features import SPEC_FILE, CategoricalFeature, FeatureSpec, NumericFeature
from platform_cli.features.online import OnlineSource

LABEL = "clicked"
ROW_KEY = "impression_id"
# Ids with a large vocabulary hash into --buckets ids each; the small context vocabularies
# (tens of values) need far fewer buckets to make collisions unlikely.
ID_FIELDS = ["user_id", "item_id", "author_id"]
CONTEXT_FIELDS = ["category", "hour", "weekday", "device", "region"]
CONTEXT_BUCKETS = 1000
NUMERIC_FIELDS = {"user_follow_count": True, "item_age_hours": True, "author_followers": True}  # name: log1p
SPLIT_RESOLUTION = 10_000
ONLINE_FILE = "_online.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", required=True, help="directory or URI of raw impressions (Parquet)")
    parser.add_argument("--out", required=True, help="output directory or URI (replaced)")
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7, help="seeds the train/eval split")
    parser.add_argument("--buckets", type=int, default=50_000, help="hash buckets per id field")
    args = parser.parse_args(argv)
    if not 0 < args.eval_fraction < 1:
        parser.error("--eval-fraction must be between 0 and 1")
    if args.buckets < 2:
        parser.error("--buckets must be at least 2")
    return args


def online_sources(raw: str) -> dict[str, OnlineSource]:
    """Columns of --raw that are online features, with their sources: RAW/ONLINE_FILE, which a
    point-in-time join writes beside the rows it filled in (examples/ctr-realtime/events.py).
    Spark skips files whose names start with '_' when it reads the rows."""
    location = storage.join(raw, ONLINE_FILE)
    if not storage.exists(location):
        return {}
    return {name: OnlineSource.model_validate(source) for name, source in json.loads(storage.read_text(location)).items()}


def fit_spec(train, buckets: int, online: dict[str, OnlineSource] | None = None) -> FeatureSpec:
    """Numeric mean/std from the train split, one Spark aggregation for all fields."""
    from pyspark.sql import functions as F

    online = online or {}
    numeric = {**NUMERIC_FIELDS, **{name: True for name in online}}

    def value(name: str):
        column = F.col(name).cast("double")
        return F.log1p(column) if numeric[name] else column

    aggregates = []
    for name in numeric:
        aggregates += [F.avg(value(name)).alias(f"{name}_mean"), F.stddev_pop(value(name)).alias(f"{name}_std")]
    stats = train.agg(*aggregates).first().asDict()
    return FeatureSpec(
        categorical=[CategoricalFeature(name=n, buckets=buckets) for n in ID_FIELDS]
        + [CategoricalFeature(name=n, buckets=CONTEXT_BUCKETS) for n in CONTEXT_FIELDS],
        numeric=[
            NumericFeature(
                name=name,
                mean=stats[f"{name}_mean"] or 0.0,  # None: the column is entirely null
                std=stats[f"{name}_std"] or 1.0,  # None or 0.0: constant, scaling is moot
                log1p=log1p,
                online=online.get(name),
            )
            for name, log1p in numeric.items()
        ],
        label=LABEL,
        hashing="xxhash64",  # Spark's own hash: the features are computed with native columns
    )


def featurize(frame, spec: FeatureSpec):
    """cat, num and label columns: the spec compiled to Spark expressions (no Python workers)."""
    from pyspark.sql import functions as F

    from platform_cli.features.spark import columns

    inputs = columns(spec, frame)
    return frame.select(inputs["cat"].alias("cat"), inputs["num"].alias("num"), F.col(LABEL).cast("float").alias("label"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    started = time.monotonic()
    storage.require_complete(args.raw)  # before Spark starts: a half-written URI dataset is refused
    spark = SparkSession.builder.appName("plinth-ctr-preprocess").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    try:
        raw = spark.read.parquet(args.raw)
        missing = sorted({ROW_KEY, LABEL} - set(raw.columns))
        if missing:
            raise SystemExit(f"error: {args.raw} has no column {', '.join(missing)}: is it the generator's output?")
        # A seeded hash of the row key: the same rows land in eval on every run and machine.
        bucket = F.pmod(F.xxhash64(F.lit(args.seed), F.col(ROW_KEY)), F.lit(SPLIT_RESOLUTION))
        is_eval = bucket < int(args.eval_fraction * SPLIT_RESOLUTION)
        splits = {"train": raw.where(~is_eval), "eval": raw.where(is_eval)}

        spec = fit_spec(splits["train"], args.buckets, online_sources(args.raw))
        with storage.staged_dir(args.out) as tmp:
            for name, split in splits.items():
                featurize(split, spec).write.parquet(storage.join(tmp, name))
            spec.save(storage.join(tmp, SPEC_FILE))
            counts = {name: spark.read.parquet(storage.join(tmp, name)).count() for name in splits}
    finally:
        spark.stop()
    print(f"train rows={counts['train']} eval rows={counts['eval']}")
    print(f"wrote {args.out} ({len(spec.categorical)} categorical, {len(spec.numeric)} numeric features) "
          f"in {time.monotonic() - started:.1f}s")
    return 0



if __name__ == "__main__":
    storage.run_script(main)
