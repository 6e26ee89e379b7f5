"""The feed's event log and the training rows that see it point in time.

    python events.py --impressions DIR --events DIR --out DIR --stream activity.job.yaml [--hours 36]

1. Gives each impression of the generator's output (examples/ctr/generate.py) an event time,
   in impression_id order over the --hours before now, and logs the events a feed emits: an
   `impression` for every row, a `click` a few seconds later for every clicked one. The log is
   JSON lines in --events, each file written whole (staged, then renamed): the directory the
   streaming job (activity.job.yaml) reads.
2. Writes the training rows to --out (Parquet): the impressions with their time and, for every
   aggregate of the stream, its value at that time from the events strictly before it
   (platform_cli.features.online.point_in_time): what the online store answers a request at
   that moment, by the same rules. OUT/_online.json says where each comes from when served,
   and preprocessing (examples/ctr/preprocess.py) puts that into the feature spec.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from platform_cli import storage
from platform_cli.features.online import OnlineSource, point_in_time
from platform_cli.spec.job import load_job

EVENTS_PER_FILE = 20_000
ONLINE_FILE = "_online.json"  # what examples/ctr/preprocess.py reads beside the rows
CLICK_DELAY_SECONDS = (2.0, 60.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impressions", required=True, help="the generator's output (Parquet)")
    parser.add_argument("--events", required=True, help="the event log: a directory of JSON-lines files (replaced)")
    parser.add_argument("--out", required=True, help="training rows with point-in-time aggregates (Parquet, replaced)")
    parser.add_argument("--stream", required=True, help="the streaming job whose aggregates these are (activity.job.yaml)")
    parser.add_argument("--hours", type=float, default=36.0, help="the log spans this much time, ending now")
    parser.add_argument("--ttl", default="1h", help="an entity last seen longer before a request has missing values")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def event_log(impressions: pd.DataFrame, hours: float, end: float, seed: int) -> pd.DataFrame:
    """Impression and click events, in event-time order; impressions get an `event_time` column."""
    rng = np.random.default_rng(seed)
    n = len(impressions)
    impressions["event_time"] = np.round(end - hours * 3600 + np.sort(rng.uniform(0, hours * 3600, n)), 3)
    base = impressions[["event_time", "user_id", "item_id"]]
    clicked = impressions[impressions["clicked"] == 1]
    clicks = clicked[["event_time", "user_id", "item_id"]].assign(
        event_time=lambda f: np.round(f.event_time + rng.uniform(*CLICK_DELAY_SECONDS, len(f)), 3))
    log = pd.concat([base.assign(event="impression"), clicks.assign(event="click")], ignore_index=True)
    return log.sort_values("event_time", kind="stable").reset_index(drop=True)


def write_log(log: pd.DataFrame, directory: str) -> None:
    with storage.staged_dir(directory) as tmp:
        for i, start in enumerate(range(0, len(log), EVENTS_PER_FILE)):
            with storage.open_output(storage.join(tmp, f"events-{i:05d}.json")) as stream:
                stream.write(log.iloc[start:start + EVENTS_PER_FILE].to_json(orient="records", lines=True).encode())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    stream = load_job(Path(args.stream)).spec
    impressions = pd.read_parquet(args.impressions)
    log = event_log(impressions, args.hours, time.time(), args.seed)
    write_log(log, args.events)
    print(f"logged {len(log)} events ({(log.event == 'click').sum()} clicks) to {args.events}")
    sources = {a.name: OnlineSource(store=stream.store, key=a.key, ttl=args.ttl) for a in stream.aggregates}
    rows = point_in_time(impressions, "event_time", log, stream.aggregates, sources)
    with storage.staged_dir(args.out) as tmp:
        with storage.open_output(storage.join(tmp, "part-00000.parquet")) as out:
            rows.to_parquet(out, engine="pyarrow", index=False)
        # Which columns are online features, and from where: preprocessing puts them in the spec.
        storage.write_json(storage.join(tmp, ONLINE_FILE), {name: s.model_dump(mode="json") for name, s in sources.items()})
    filled = {a.name: f"{rows[a.name].notna().mean():.0%}" for a in stream.aggregates}
    print(f"wrote {len(rows)} training rows to {args.out} with {', '.join(f'{k} ({v} known)' for k, v in filled.items())} "
          f"in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    storage.run_script(main)
