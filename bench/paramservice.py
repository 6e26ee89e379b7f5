"""The parameter service: embedding rows fetched from a store next to the whole model in process,
in one run.

    .venv/bin/python bench/paramservice.py                                  # trains the example model first
    .venv/bin/python bench/paramservice.py --model-dir DIR --eval-dir DIR   # a trained CTR model and its eval split

In a throw-away project the model is registered three times (ctr, ctr-sqlite, ctr-redis) and
exported with `plinth model params export` to SQLite and to a redis-server started here (with a
password, on loopback). Then, 64 rows at a time (batches drawn from the eval split, a different
one per call, so no lookup repeats the last one's ids):
- in process: the whole model's call as the version server runs it (TFLite), the store lookup
  alone (SQLite, Redis, and a memory-mapped .npy per table as the embedded alternative), and the
  parameter-service call (keys, lookup, dense) for each store;
- served: the same request (1 row, then 64 rows of raw fields) through each model's router
  (`plinth model promote`, whole vs `--parameters`), requests interleaved round-robin over the
  three so they share the machine's state, one at a time on keep-alive connections.
The machine's load average is recorded before and after: other work shares the cores. Writes
bench/results-paramservice.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from run import log, make_project, plinth, write_results  # noqa: E402

ROWS = 64
CALLS = 2000
REQUESTS = 600
WARM_UP = 50
PASSWORD = "bench-parameter-store"


def percentiles(samples_s: list[float]) -> dict:
    import numpy as np

    us = np.array(samples_s) * 1e6
    return {"p50 us": round(float(np.percentile(us, 50)), 1), "p99 us": round(float(np.percentile(us, 99)), 1)}


def latency(fn, batches, calls: int) -> dict:
    for batch in batches[:WARM_UP]:
        fn(batch)
    samples = []
    for i in range(calls):
        batch = batches[i % len(batches)]
        started = time.perf_counter()
        fn(batch)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def start_redis(root: Path) -> tuple[subprocess.Popen, str]:
    from serving import free_port

    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
                                "--save", "", "--appendonly", "no", "--dir", str(root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import redis

    client = redis.Redis(port=port, password=PASSWORD)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return process, f"redis://127.0.0.1:{port}/0"


def raw_rows(count: int) -> list[dict]:
    """Requests' raw fields: the example generator's impressions (its own seed, not the training data's)."""
    spec = importlib.util.spec_from_file_location("ctr_generate", REPO / "examples" / "ctr" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frame = module.generate(rows=count, users=20_000, items=5_000, seed=99)
    return frame.drop(columns=[module.LABEL]).to_dict("records")


def in_process(stack, registry, model_dir: Path, eval_dir: Path, stores: dict[str, str], root: Path) -> dict:
    import numpy as np

    from edge import eval_split
    from platform_cli.features import SPEC_FILE, FeatureSpec
    from platform_cli.paramservice.predictor import ParameterServiceModel
    from platform_cli.serving.server import _load_model, _pin_threads

    _pin_threads()
    inputs, _ = eval_split(eval_dir)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(inputs["cat"]) - ROWS, 500)
    batches = [{k: v[s:s + ROWS] for k, v in inputs.items()} for s in starts]
    whole, runtime = _load_model(model_dir, FeatureSpec.load(model_dir / SPEC_FILE), "auto")
    results = {f"whole model call ({runtime})": latency(whole, batches, CALLS)}
    log(f"whole model: {results}")
    first = next(iter(stores))
    served = {name: ParameterServiceModel.load(registry.export_dir(name, 1, "parameters"), url) for name, url in stores.items()}
    ids = [served[first].row_ids(batch) for batch in batches]
    results["rows looked up per call (mean, unique per table)"] = {
        table: round(float(np.mean([len(i[table]) for i in ids])), 1) for table in ids[0]}
    # The embedded alternative: each table as a .npy file, memory-mapped, gathered with numpy.
    tables = {}
    for table in ids[0]:
        vectors = served[first].store.lookup(first, 1, {table: np.arange(0, _rows(served[first], table))})[table]
        np.save(root / f"{table.replace('/', '_')}.npy", vectors)
        tables[table] = np.load(root / f"{table.replace('/', '_')}.npy", mmap_mode="r")
    results["lookup, memory-mapped .npy"] = latency(lambda i: {t: np.asarray(tables[t][i[t]]) for t in i}, ids, CALLS)
    for name, model in served.items():
        label = "SQLite" if stores[name].startswith("sqlite") else "Redis"
        results[f"lookup, {label}"] = latency(lambda i, m=model, n=name: m.store.lookup(n, 1, i), ids, CALLS)
        results[f"parameter-service call, {label} (keys + lookup + dense)"] = latency(model, batches, CALLS)
        difference = max(float(np.max(np.abs(model(b) - whole(b)))) for b in batches[:50])
        results[f"parameter-service call, {label} (keys + lookup + dense)"]["max |dp| vs whole"] = difference
        log(f"{label}: {results[f'lookup, {label}']}, call {results[f'parameter-service call, {label} (keys + lookup + dense)']}")
    return results


def _rows(model, table: str) -> int:
    return next(t["rows"] for t in model.store.tables(model.model) if t["version"] == model.version and t["table"] == table)


def served(stack, names: dict[str, str], rows: list[dict]) -> dict:
    import httpx

    from platform_cli.serving import release

    urls = {label: f"{release.find_router(stack, name).url}/v1/models/{name}:predict" for label, name in names.items()}
    results = {}
    with httpx.Client(timeout=30) as client:
        for count in (1, ROWS):
            bodies = [{"instances": rows[i:i + count]} for i in range(0, len(rows) - count, max(1, count // 4))][:200]
            samples: dict[str, list[float]] = {label: [] for label in urls}
            for i in range(WARM_UP + REQUESTS):
                for label, url in urls.items():  # round-robin: the three see the same machine state
                    started = time.perf_counter()
                    answer = client.post(url, json=bodies[i % len(bodies)])
                    elapsed = time.perf_counter() - started
                    if answer.status_code != 200:
                        raise SystemExit(f"{label}: {answer.status_code} {answer.text[:300]}")
                    if i >= WARM_UP:
                        samples[label].append(elapsed)
            for label in urls:
                results[f"{count} row{'s' if count > 1 else ''}, {label}"] = percentiles(samples[label])
                log(f"{count} rows {label}: {results[f'{count} row' + ('s' if count > 1 else '') + f', {label}']}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="a trained CTR model directory (default: train the example)")
    parser.add_argument("--eval-dir", type=Path, help="its eval split (the preprocessing job's OUT/eval)")
    args = parser.parse_args()
    if (args.model_dir is None) != (args.eval_dir is None):
        parser.error("--model-dir and --eval-dir go together")
    root = Path(tempfile.mkdtemp(prefix="plinth-bench-params-"))
    env = make_project(root) | {"PLINTH_REDIS_PASSWORD": PASSWORD}
    os.environ.update(PLINTH_PROJECT_DIR=str(root), PLINTH_REDIS_PASSWORD=PASSWORD)
    results: dict = {"conditions": {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "load average before": [round(x, 2) for x in os.getloadavg()],
        "rows per call": ROWS, "in-process calls": CALLS, "requests per figure": REQUESTS, "warm-up": WARM_UP,
    }}
    redis_process, redis_url = start_redis(root)
    names = {"whole model": "ctr", "SQLite": "ctr-sqlite", "Redis": "ctr-redis"}
    try:
        if args.model_dir:
            model_dir, eval_dir = args.model_dir, args.eval_dir
        else:
            from edge import trained_example

            model_dir, eval_dir = trained_example(root, env)
        from platform_cli.registry import ModelRegistry
        from platform_cli.spec.stack import load_stack

        stack = load_stack("local")
        registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
        for name in names.values():
            registry.register(name, model_dir, {}, {"job_id": "bench"})
        stores = {"ctr-sqlite": "sqlite", "ctr-redis": redis_url}
        for name, store in stores.items():
            log(f"plinth model params export {name} 1 --store {store}")
            started = time.perf_counter()
            exported = json.loads(plinth(env, "model", "params", "export", name, "1", "--store", store, "-o", "json"))
            results["conditions"][f"export to {store.split(':')[0]} s"] = round(time.perf_counter() - started, 1)
            results["conditions"]["parameters"] = exported["parameters"]
        resolved = {name: registry.get(name, 1).exports["parameters"]["store"] for name in stores}
        results["in process"] = in_process(stack, registry, model_dir, eval_dir, resolved, root)
        log("serving: promote each model (whole, --parameters sqlite, --parameters redis)")
        plinth(env, "model", "promote", "ctr", "1")
        plinth(env, "model", "promote", "ctr-sqlite", "1", "--parameters", "sqlite")
        plinth(env, "model", "promote", "ctr-redis", "1", "--parameters", redis_url)
        results["served through the router"] = served(stack, names, raw_rows(4000))
    finally:
        for name in names.values():
            subprocess.run([str(REPO / ".venv" / "bin" / "plinth"), "model", "stop", name], env=env, capture_output=True)
        redis_process.terminate()
        redis_process.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    write_results(results, "results-paramservice.json")
    print(table(results))
    return 0


def table(results: dict) -> str:
    lines = []
    for section in ("in process", "served through the router"):
        lines += [f"\n{section}\n", "| what | p50 µs | p99 µs |", "| --- | --- | --- |"]
        lines += [f"| {name} | {f['p50 us']} | {f['p99 us']} |" for name, f in results[section].items() if "p50 us" in f]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
