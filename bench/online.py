"""Streaming features: how fresh the online store is, and what fetching from it adds to a request.

    .venv/bin/python bench/online.py                 # ~10 minutes on 2 cores (trains a small model first)
    .venv/bin/python bench/online.py --duration 10 --rounds 3 --events 40

In a throw-away project:
1. runs examples/ctr-realtime/flow.yaml on a small dataset: an event log, point-in-time
   training rows, training, and the release of `ctr-realtime` (its server fetches three
   activity features from the online store), then submits the streaming job
   (examples/ctr-realtime/activity.job.yaml, trigger 1 s) and waits until it has applied the log;
2. freshness: drops --events files of one event each (a new user, stamped with the wall clock),
   at intervals that do not line up with the trigger, and times each from the moment its file
   appears to the moment the store answers for that user; compared with trigger + 2 s;
3. fetch cost: the same SavedModel registered a second time as `ctr-offline`, with a feature
   spec that declares nothing online, released the same way; one row through each model's
   traffic split (HAProxy), `ctr-realtime` fetching the row's three activity values, `ctr-offline`
   given the same values in the request. The two answer the same prediction (checked first),
   so the difference in latency is the fetch. wrk, 1 connection, --rounds rounds of --duration
   seconds each, the two interleaved.

Writes bench/results-online.json and prints Markdown tables; the load average is recorded
because other work shares the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from run import _wrk_figures, log, make_project, plinth  # noqa: E402

EXAMPLE = REPO / "examples" / "ctr-realtime"
ONLINE = ("user_clicks_1h", "user_impressions_1h", "item_impressions_1d")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)
    return result


def lag(env: dict, job_id: str) -> dict:
    return json.loads(plinth(env, "job", "status", job_id, "-o", "json")).get("lag") or {}


def freshness(root: Path, env: dict, job_id: str, events: int, trigger: float) -> dict:
    from platform_cli.features.online import SQLiteStore

    events_dir = root / ".plinth" / "local" / "storage" / "ctr-realtime" / "events"
    store = SQLiteStore(root / ".plinth" / "local" / "online" / "ctr-online.db")
    seconds = []
    try:
        for i in range(events):
            user = f"fresh-{i}"
            staging = events_dir.parent / f".fresh-{i}.json"
            staging.write_text(json.dumps({"event_time": time.time(), "event": "impression", "user_id": user, "item_id": "i000001"}) + "\n")
            os.replace(staging, events_dir / f"fresh-{i:04d}.json")
            appeared = time.perf_counter()
            wait_for(lambda: store.fetch({"user_impressions_1h": {user}}, time.time())[0], 60, f"event {i} in the store")
            seconds.append(time.perf_counter() - appeared)
            time.sleep(0.37 * (1 + i % 3))  # out of step with the trigger
    finally:
        store.close()
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"events": events, "trigger (s)": trigger, "p50 (s)": round(statistics.median(seconds), 3), "p95 (s)": round(p95, 3),
            "max (s)": round(max(seconds), 3), "bound: trigger + 2 s": trigger + 2, "within bound": p95 <= trigger + 2}


def register_offline_copy(root: Path, env: dict) -> None:
    """ctr-realtime's version 1 again, as `ctr-offline`, its spec declaring nothing online."""
    os.environ["PLINTH_PROJECT_DIR"] = env["PLINTH_PROJECT_DIR"]
    from platform_cli.registry import ModelRegistry
    from platform_cli.spec.stack import load_stack

    stack = load_stack("local")
    registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
    copy = root / "ctr-offline-model"
    shutil.copytree(registry.model_dir("ctr-realtime", 1), copy)
    spec = json.loads((copy / "feature_spec.json").read_text())
    for feature in spec["numeric"]:
        feature.pop("online", None)
    (copy / "feature_spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    registry.register("ctr-offline", copy, {}, {"source": "ctr-realtime version 1, online features given in the request"})


def post(url: str, body: dict) -> dict:
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def fetch_cost(root: Path, env: dict, duration: int, rounds: int) -> dict:
    from platform_cli.features import FeatureSpec
    from platform_cli.features.online import OnlineFeatures

    os.environ["PLINTH_PROJECT_DIR"] = env["PLINTH_PROJECT_DIR"]
    from platform_cli.serving import release
    from platform_cli.spec.stack import load_stack

    stack = load_stack("local")
    row = json.loads((EXAMPLE / "request.json").read_text())["instances"][0]
    # The feature spec preprocessing wrote with the rows of sample table ctr-realtime.
    spec_path = next(p for p in (root / ".plinth").rglob("feature_spec.json") if "samples/ctr-realtime/" in p.as_posix())
    online = OnlineFeatures.open(FeatureSpec.load(spec_path), stack.online_stores)
    values = online.values([row])
    online.close()
    given = {**row, **{name: column[0] for name, column in values.items()}}
    urls = {"ctr-realtime": f"{release.find_router(stack, 'ctr-realtime').url}/v1/models/ctr-realtime:predict",
            "ctr-offline": f"{release.find_router(stack, 'ctr-offline').url}/v1/models/ctr-offline:predict"}
    bodies = {"ctr-realtime": {"instances": [row]}, "ctr-offline": {"instances": [given]}}
    answers = {name: post(url, bodies[name])["predictions"] for name, url in urls.items()}
    if answers["ctr-realtime"] != answers["ctr-offline"]:
        raise SystemExit(f"the two paths disagree: {answers}; the fetched values were {values}")
    log(f"both answer {answers['ctr-realtime']}; fetched {json.dumps({k: v[0] for k, v in values.items()})}")
    scripts = {}
    for name, body in bodies.items():
        scripts[name] = root / f"{name}.lua"
        scripts[name].write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(json.dumps(body))}\n')
    runs: dict[str, list] = {name: [] for name in urls}
    for i in range(rounds):
        for name in (list(urls) if i % 2 == 0 else list(reversed(urls))):
            out = subprocess.run(["wrk", "-t1", "-c1", f"-d{duration}s", "--latency", "-s", str(scripts[name]), urls[name]],
                                 capture_output=True, text=True, check=True).stdout
            runs[name].append(_wrk_figures(out))
            log(f"round {i + 1} {name}: {runs[name][-1]}")
    p50 = {name: round(statistics.median(r["p50 (ms)"] for r in figures), 3) for name, figures in runs.items()}
    return {"fetched values": {k: v[0] for k, v in values.items()}, "prediction (both)": answers["ctr-realtime"][0],
            "runs": runs, "p50 with the fetch (ms)": p50["ctr-realtime"], "p50 without (ms)": p50["ctr-offline"],
            "added p50 (ms)": round(p50["ctr-realtime"] - p50["ctr-offline"], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8000, help="impressions of the example data")
    parser.add_argument("--events", type=int, default=40, help="events timed for freshness")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=4, help="wrk runs per model, interleaved")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load average at start": os.getloadavg()}
    root = Path(tempfile.mkdtemp(prefix="plinth-bench-online-"))
    env = make_project(root)
    job_id = None
    try:
        log("the realtime CTR flow: event log, point-in-time rows, training, release of ctr-realtime")
        plinth(env, "flow", "run", "-f", str(EXAMPLE / "flow.yaml"), "-p", f"rows={args.rows}", "-p", "epochs=1")
        log("the stream over the logged events")
        job_id = plinth(env, "job", "submit", "-f", str(EXAMPLE / "activity.job.yaml")).split()[0].removeprefix("job/")
        wait_for(lambda: (l := lag(env, job_id)) and l.get("behind_events") == 0 and l.get("processed", 0) > 0, 600, "the stream to apply the log")
        log(f"freshness: {args.events} events, one file each")
        results["freshness"] = freshness(root, env, job_id, args.events, trigger=1.0)
        log(f"freshness: {results['freshness']}")
        register_offline_copy(root, env)
        plinth(env, "model", "promote", "ctr-offline", "1")
        log("fetch cost through the traffic split")
        results["fetch through the router"] = fetch_cost(root, env, args.duration, args.rounds)
        results["load average at end"] = os.getloadavg()
    except BaseException:
        if job_id:  # what the stream was doing when the benchmark gave up
            log("the stream's log ends:\n" + subprocess.run([str(Path(sys.executable).parent / "plinth"), "job", "logs", job_id, "--tail", "40"],
                                                            env=env, capture_output=True, text=True).stdout)
        raise
    finally:
        if job_id:
            plinth(env, "job", "cancel", job_id)
        for model in ("ctr-realtime", "ctr-offline"):
            subprocess.run([str(Path(sys.executable).parent / "plinth"), "model", "stop", model], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    (REPO / "bench" / "results-online.json").write_text(json.dumps(results, indent=2) + "\n")
    f, c = results["freshness"], results["fetch through the router"]
    print("\n| freshness (event file appears -> visible in the store) | p50 | p95 | max | bound |\n|---|---|---|---|---|")
    print(f"| {f['events']} events, trigger {f['trigger (s)']:g} s | {f['p50 (s)']} s | {f['p95 (s)']} s | {f['max (s)']} s | {f['bound: trigger + 2 s']:g} s |")
    print("\n| one row through the traffic split, 1 connection | p50 |\n|---|---|")
    print(f"| ctr-realtime: 3 features fetched from the store (SQLite) | {c['p50 with the fetch (ms)']} ms |")
    print(f"| ctr-offline: the same values in the request | {c['p50 without (ms)']} ms |")
    print(f"| added by the fetch | {c['added p50 (ms)']} ms |")
    shown = lambda loads: " ".join(f"{x:.1f}" for x in loads)  # noqa: E731
    print(f"\nload average (1, 5, 15 min): {shown(results['load average at start'])} at start, {shown(results['load average at end'])} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
