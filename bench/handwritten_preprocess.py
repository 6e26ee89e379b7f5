"""The baseline for the Spark benchmark: the CTR preprocessing written by hand in plain PySpark.

Same work as examples/ctr/preprocess.py (seeded hash split, numeric stats on train, hashed
categorical ids, standardised numerics, Parquet out) but with Spark's native column functions
instead of the feature spec compiled by platform_cli.features.spark, and run with spark-submit directly instead
of through `plinth job submit`. The hash values differ (xxhash64 vs SipHash); the work does not.
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

ID_FIELDS = ["user_id", "item_id", "author_id"]
CONTEXT_FIELDS = ["category", "hour", "weekday", "device", "region"]
NUMERIC_FIELDS = ["user_follow_count", "item_age_hours", "author_followers"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--buckets", type=int, default=50_000)
    args = parser.parse_args()

    spark = SparkSession.builder.appName("handwritten-preprocess").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    raw = spark.read.parquet(args.raw)
    is_eval = F.pmod(F.xxhash64(F.lit(7), F.col("impression_id")), F.lit(10_000)) < int(args.eval_fraction * 10_000)
    train, evaluation = raw.where(~is_eval), raw.where(is_eval)

    logged = {name: F.log1p(F.col(name).cast("double")) for name in NUMERIC_FIELDS}
    stats = train.agg(*[F.avg(c).alias(f"{n}_mean") for n, c in logged.items()], *[F.stddev_pop(c).alias(f"{n}_std") for n, c in logged.items()]).first()

    def featurize(frame):
        cat = [F.pmod(F.xxhash64(F.coalesce(F.col(n).cast("string"), F.lit("__missing__"))), F.lit(args.buckets if n in ID_FIELDS else 1000)) for n in ID_FIELDS + CONTEXT_FIELDS]
        num = [((F.coalesce(logged[n], F.lit(stats[f"{n}_mean"])) - stats[f"{n}_mean"]) / (stats[f"{n}_std"] or 1.0)).cast("float") for n in NUMERIC_FIELDS]
        return frame.select(F.array(*cat).alias("cat"), F.array(*num).alias("num"), F.col("clicked").cast("float").alias("label"))

    featurize(train).write.mode("overwrite").parquet(f"{args.out}/train")
    featurize(evaluation).write.mode("overwrite").parquet(f"{args.out}/eval")
    print(f"train rows={spark.read.parquet(f'{args.out}/train').count()} eval rows={spark.read.parquet(f'{args.out}/eval').count()}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
