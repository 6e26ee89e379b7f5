"""Generate a synthetic Weibo-style feed click-through dataset as Parquet.

Each row is one impression: a user saw an item (a post by an author, in a category) in some
context (hour, weekday, device, region), with a few numeric fields, and clicked or not. Clicks are
drawn from a hidden model, sigmoid(base + user/item/author biases + user.item latent affinity +
context effects + numeric effects), so a model trained on the raw fields can learn the signal; the
base is calibrated to the target CTR. Users and items are sampled with heavy-tailed activity and
popularity, as in a real feed, and a few values are missing.

    python generate.py --rows 40000 --out data/raw

writes data/raw/part-00000.parquet (columns: RAW_FIELDS plus LABEL). The directory is built next
to --out and renamed into place, so an interrupted run leaves no half-written dataset. --out may
also be a URI (file://, hdfs://, s3://: what ${storage} is on a cluster stack); there the
directory also gets a _SUCCESS marker, written last (see platform_cli.storage).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from platform_cli import storage

LABEL = "clicked"
RAW_FIELDS = [
    "impression_id",
    "user_id",
    "item_id",
    "author_id",
    "category",
    "hour",
    "weekday",
    "device",
    "region",
    "user_follow_count",
    "item_age_hours",
    "author_followers",
]

CATEGORIES = ["entertainment", "sports", "tech", "finance", "fashion", "food", "travel", "gaming", "news", "music"]
DEVICES = ["android", "ios", "web"]
DEVICE_SHARE = [0.55, 0.35, 0.10]
REGIONS = ["beijing", "shanghai", "guangdong", "zhejiang", "jiangsu", "sichuan", "hubei", "shandong", "fujian", "henan"]
TARGET_CTR = 0.15
LATENT_DIM = 4
ITEMS_PER_AUTHOR = 5
MISSING_SHARE = {"region": 0.03, "user_follow_count": 0.02}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000, help="impressions to generate")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", required=True, help="output directory or URI (replaced)")
    parser.add_argument("--holdout", help="also write --holdout-rows more impressions of the same users and items here, never trained on (for evaluation)")
    parser.add_argument("--holdout-rows", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("rows", "users", "items"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def generate(rows: int, users: int, items: int, seed: int) -> pd.DataFrame:
    """Impressions with raw fields and a LABEL column; the same arguments give the same frame."""
    rng = np.random.default_rng(seed)
    authors = max(1, items // ITEMS_PER_AUTHOR)

    # Entities: hidden per-entity effects plus the observable attributes they drive.
    user_bias = rng.normal(0.0, 0.6, users)
    user_vec = rng.normal(0.0, 1.0, (users, LATENT_DIM))
    user_activity = rng.lognormal(0.0, 1.0, users)
    user_follow_count = np.round(rng.lognormal(4.5, 1.2, users))
    item_author = rng.integers(0, authors, items)
    item_category = rng.integers(0, len(CATEGORIES), items)
    # Items of a category share a direction in latent space, so taste is partly per category.
    category_vec = rng.normal(0.0, 1.0, (len(CATEGORIES), LATENT_DIM))
    item_vec = category_vec[item_category] + rng.normal(0.0, 0.5, (items, LATENT_DIM))
    item_bias = rng.normal(0.0, 0.8, items)
    item_popularity = rng.lognormal(0.0, 1.2, items)
    author_bias = rng.normal(0.0, 0.3, authors)
    author_followers = np.round(rng.lognormal(8.0, 2.0, authors))
    region_effect = rng.normal(0.0, 0.15, len(REGIONS))

    # Impressions.
    u = rng.choice(users, rows, p=user_activity / user_activity.sum())
    i = rng.choice(items, rows, p=item_popularity / item_popularity.sum())
    a = item_author[i]
    hour = _sample_hours(rng, rows)
    weekday = rng.integers(0, 7, rows)
    device = rng.choice(len(DEVICES), rows, p=DEVICE_SHARE)
    region = rng.integers(0, len(REGIONS), rows)
    item_age_hours = np.round(rng.exponential(24.0, rows), 2)

    logit = (
        user_bias[u]
        + item_bias[i]
        + author_bias[a]
        + 0.35 * np.einsum("nd,nd->n", user_vec[u], item_vec[i]) / np.sqrt(LATENT_DIM)
        + 0.5 * np.cos((hour - 21) * np.pi / 12)  # evening peak, small hours trough
        + np.where(weekday >= 5, 0.15, 0.0)
        + np.array([0.0, 0.25, -0.5])[device]
        + region_effect[region]
        + 0.3 * _zscore(np.log1p(user_follow_count))[u]
        - 0.7 * _zscore(np.log1p(item_age_hours))  # fresh posts get clicked
        + 0.4 * _zscore(np.log1p(author_followers))[a]
    )
    logit += _calibrate_base(logit, TARGET_CTR)
    clicked = (rng.random(rows) < expit(logit)).astype(np.int32)

    frame = pd.DataFrame(
        {
            "impression_id": np.arange(rows, dtype=np.int64),
            "user_id": _names("u", users)[u],
            "item_id": _names("i", items)[i],
            "author_id": _names("a", authors)[a],
            "category": np.array(CATEGORIES, dtype=object)[item_category[i]],
            "hour": hour.astype(np.int32),
            "weekday": weekday.astype(np.int32),
            "device": np.array(DEVICES, dtype=object)[device],
            "region": np.array(REGIONS, dtype=object)[region],
            "user_follow_count": pd.array(user_follow_count[u].astype(np.int64), dtype="Int64"),
            "item_age_hours": item_age_hours,
            "author_followers": author_followers[a].astype(np.int64),
            LABEL: clicked,
        }
    )
    for column, share in MISSING_SHARE.items():
        frame.loc[rng.random(rows) < share, column] = None
    frame.attrs["oracle_auc"] = float(roc_auc_score(clicked, logit))
    return frame


def _sample_hours(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Feed traffic: low at night, rising through the day, peaking in the evening."""
    hours = np.arange(24)
    weight = 1.0 + 0.8 * np.cos((hours - 20) * np.pi / 12)
    return rng.choice(hours, rows, p=weight / weight.sum())


def _names(prefix: str, count: int) -> np.ndarray:
    return np.array([f"{prefix}{k:06d}" for k in range(count)], dtype=object)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() or 1.0)


def _calibrate_base(logit: np.ndarray, ctr: float) -> float:
    """The offset that makes the mean click probability `ctr` (the mean is monotonic in it)."""
    return brentq(lambda offset: expit(logit + offset).mean() - ctr, -20.0, 20.0)


def write(frame: pd.DataFrame, out: str) -> None:
    """Write `frame` as out/part-00000.parquet, replacing `out` only once the file is complete."""
    with storage.staged_dir(out) as tmp, storage.open_output(storage.join(tmp, "part-00000.parquet")) as stream:
        frame.to_parquet(stream, engine="pyarrow", index=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    print(f"generating {args.rows} impressions for {args.users} users and {args.items} items (seed {args.seed})")
    holdout_rows = args.holdout_rows if args.holdout else 0
    frame = generate(args.rows + holdout_rows, args.users, args.items, args.seed)
    print(f"ctr={frame[LABEL].mean():.3f} oracle_auc={frame.attrs['oracle_auc']:.4f} (the hidden model's own AUC)")
    if holdout_rows:
        # Drawn together, split by position: the same world, rows the model never sees.
        write(frame.iloc[args.rows :].reset_index(drop=True), args.holdout)
        print(f"wrote {holdout_rows} holdout rows to {args.holdout}")
        frame = frame.iloc[: args.rows]
    write(frame, args.out)
    print(f"wrote {len(frame)} rows to {args.out} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    storage.run_script(main)
