"""Serving through the gray-release traffic split vs straight to the model server vs in-process.

    .venv/bin/python bench/serving_split.py            # ~4 minutes on 2 cores
    .venv/bin/python bench/serving_split.py --duration 4 --rounds 3

Same model, same one-row request (examples/ctr/request.json's first row), same run:

- in-process:   the model server's own preprocess + predict called in this process (no HTTP)
- direct:       wrk -> the version's KServe model server
- split 100:    wrk -> the model's router -> the same model server (router overhead alone)
- split 90/10:  wrk -> the router -> two version servers, 90% / 10% (a live canary),
                alternating with direct again (two servers now share the cores)

at concurrency 1, 8 and 32 (wrk connections; in-process is one caller). wrk is a compiled load
generator (Debian package `wrk`), so the client does not compete for the cores the way a Python
client would. The model is a small SavedModel with the CTR example's feature spec (8 categorical,
3 numeric fields), so the feature transform costs what it costs in the real pipeline; the
trained CTR network itself adds ~0.3 ms per call (BENCHMARKS.md).

Writes bench/results-serving.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from run import _wrk_figures  # noqa: E402  (bench/run.py's wrk output parser)

CONCURRENCY = (1, 8, 32)


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def ctr_spec():
    from platform_cli.features import CategoricalFeature, FeatureSpec, NumericFeature

    ids = [CategoricalFeature(name=n, buckets=50_000) for n in ("user_id", "item_id", "author_id")]
    context = [CategoricalFeature(name=n, buckets=1000) for n in ("category", "hour", "weekday", "device", "region")]
    numeric = [NumericFeature(name=n, mean=4.0, std=1.5, log1p=True) for n in ("user_follow_count", "item_age_hours", "author_followers")]
    return FeatureSpec(categorical=ids + context, numeric=numeric, label="clicked")


def build_model(path: Path, bias: float) -> None:
    import tensorflow as tf

    spec = ctr_spec()
    n_cat, n_num = len(spec.categorical), len(spec.numeric)

    class SmallCtr(tf.Module):
        def __init__(self):
            super().__init__()
            self.embedding = tf.Variable(tf.random.stateless_normal([50_000, 8], seed=[1, 2]) * 0.05)
            self.dense = tf.Variable(tf.random.stateless_normal([n_cat * 8 + n_num, 1], seed=[3, 4]) * 0.1)
            self.bias = tf.Variable(bias)

        @tf.function(input_signature=[tf.TensorSpec([None, n_cat], tf.int64, name="cat"), tf.TensorSpec([None, n_num], tf.float32, name="num")])
        def serve(self, cat, num):
            embedded = tf.reshape(tf.gather(self.embedding, cat), [-1, n_cat * 8])
            logit = tf.squeeze(tf.concat([embedded, num], axis=1) @ self.dense, axis=1) + self.bias
            return {"probability": tf.sigmoid(logit)}

    module = SmallCtr()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    spec.save(path / "feature_spec.json")


def wrk(url: str, body: dict, connections: int, duration: int, script_dir: Path) -> dict:
    script = script_dir / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(json.dumps(body))}\n')
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    return _wrk_figures(out)


def interleaved(routes: dict[str, str], body: dict, args, root: Path) -> list[dict]:
    """{concurrency: median figures} per route, the routes' runs alternating round by round."""
    figures = {name: {} for name in routes}
    for c in CONCURRENCY:
        runs = {name: [] for name in routes}
        for _ in range(args.rounds):
            for name, url in routes.items():
                runs[name].append(wrk(url, body, c, args.duration, root))
        for name, samples in runs.items():
            figures[name][f"c{c}"] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
            log(f"{name} c{c}: {figures[name][f'c{c}']} (median of {args.rounds})")
    return list(figures.values())


def in_process(model_dir: Path, body: dict, calls: int = 3000) -> dict:
    from platform_cli.serving.server import SavedModelPredictor

    model = SavedModelPredictor("ctr-v1", model_dir)
    model.load()
    for _ in range(200):
        model.predict(model.preprocess(body))
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        model.predict(model.preprocess(body))
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {
        "p50 (ms)": round(samples[len(samples) // 2] * 1000, 3),
        "p99 (ms)": round(samples[int(len(samples) * 0.99)] * 1000, 3),
        "req/s": round(len(samples) / sum(samples)),
        "errors": 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per path and concurrency (the median is kept)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found (apt-get install wrk)")

    root = Path(tempfile.mkdtemp(prefix="plinth-bench-split-"))
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    os.environ["PLINTH_PROJECT_DIR"] = str(root)

    from platform_cli.registry import ModelRegistry
    from platform_cli.serving import local, release
    from platform_cli.spec.stack import load_stack

    stack = load_stack("local")
    registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
    log("building and registering two versions")
    for version, bias in ((1, -1.5), (2, -1.0)):
        model_dir = root / f"model-{version}"
        model_dir.mkdir()
        build_model(model_dir, bias)
        registry.register("ctr", model_dir, {}, {"job_id": f"bench-{version}"})

    body = {"instances": json.loads((REPO / "examples" / "ctr" / "request.json").read_text())["instances"][:1]}
    results: dict = {"conditions": {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, load average before the run {os.getloadavg()[0]:.2f}",
        "client": "wrk 4.1, 1 thread", "duration_s": args.duration, "rounds (median kept)": args.rounds, "request": "1 row",
    }}
    try:
        log("promoting version 1 (router + model server)")
        release.promote(stack, registry, "ctr", 1, None)
        router = release.find_router(stack, "ctr")
        server = local.find(local.state_dir(stack), "ctr-v1")
        direct, split = f"{server.url}/v1/models/ctr-v1:predict", f"{router.url}/v1/models/ctr:predict"
        results["in-process"] = {"c1": in_process(registry.model_dir("ctr", 1), body)}
        log(f"in-process: {results['in-process']['c1']}")
        # Direct and split runs alternate, `rounds` times each, and each figure is the median
        # over its rounds: other work on the machine then weighs on both paths alike.
        results["direct"], results["split 100"] = interleaved({"direct": direct, "split 100": split}, body, args, root)
        log("promoting version 2 as a 10% canary")
        release.promote(stack, registry, "ctr", 2, 10)
        results["split 90/10"], results["direct (again)"] = interleaved({"split 90/10": split, "direct (again)": direct}, body, args, root)
        results["router metrics after the run"] = release.router_state(stack, "ctr")["metrics"]
    finally:
        release.stop(stack, "ctr")
        shutil.rmtree(root, ignore_errors=True)
    results["conditions"]["load average after the run"] = round(os.getloadavg()[0], 2)

    (REPO / "bench" / "results-serving.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| path | concurrency | p50 ms | p99 ms | req/s | errors |")
    print("|---|---|---|---|---|---|")
    for name in ("in-process", "direct", "split 100", "split 90/10", "direct (again)"):
        for key, figures in results[name].items():
            print(f"| {name} | {key[1:]} | {figures['p50 (ms)']} | {figures['p99 (ms)']} | {figures['req/s']} | {figures['errors']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
