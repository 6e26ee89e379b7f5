"""Synthesise Weibo-style comments for an anti-spam classifier: text, sender, links, label.

    python generate.py --out data/raw --rows 6000 --seed 3

Spam is drawn from templates with promotional words, links and new accounts; ham from everyday
phrases. Some words appear in both (and some spam is written like ham), so the task is
learnable but not trivial. Output: OUT/part-00000.parquet with columns
    text (str), sender_region (str or null), sender_age_days (int), links (int), spam (0/1)
OUT is replaced whole; it may be a local path or a URI (see platform_cli.storage).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from platform_cli import storage

LABEL = "spam"
HAM_WORDS = ("today weather lunch friends movie great match team coffee weekend photo family news game "
             "happy birthday travel music study work home city rain sunny love funny cute dog cat").split()
SPAM_WORDS = ("free win prize cash click link discount offer followers cheap vip bonus lottery guaranteed "
              "earn money fast limited deal promo invest crypto giveaway").split()
REGIONS = ["beijing", "shanghai", "guangdong", "zhejiang", "sichuan", "overseas"]


def generate(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spam = rng.random(rows) < 0.3
    texts = []
    for is_spam in spam:
        length = int(rng.integers(4, 14))
        # Spam mixes in ham words (to look normal); ham now and then uses a "spammy" word.
        share = 0.35 if is_spam else 0.08
        words = [rng.choice(SPAM_WORDS) if rng.random() < share else rng.choice(HAM_WORDS) for _ in range(length)]
        texts.append(" ".join(words).capitalize() + ("!!" if is_spam and rng.random() < 0.5 else "."))
    frame = pd.DataFrame({
        "text": texts,
        "sender_region": np.array(REGIONS, dtype=object)[np.where(spam & (rng.random(rows) < 0.5), 5, rng.integers(0, 6, rows))],
        "sender_age_days": np.where(spam & (rng.random(rows) < 0.7), rng.integers(0, 90, rows), rng.integers(0, 3000, rows)).astype(np.int64),
        "links": np.where(spam, rng.poisson(1.2, rows), rng.poisson(0.1, rows)).astype(np.int64),
        LABEL: spam.astype(np.int64),
    })
    frame.loc[rng.random(rows) < 0.05, "sender_region"] = None
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory or URI (replaced)")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    started = time.monotonic()
    frame = generate(args.rows, args.seed)
    with storage.staged_dir(args.out) as tmp, storage.open_output(storage.join(tmp, "part-00000.parquet")) as stream:
        frame.to_parquet(stream, index=False)
    print(f"wrote {len(frame)} comments ({frame[LABEL].mean():.0%} spam) to {args.out} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    storage.run_script(main)
