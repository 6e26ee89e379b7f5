"""Plinth's first benchmark: each figure next to its baseline, measured in the same run.

    .venv/bin/python bench/run.py            # ~9 minutes on 2 cores; prints a Markdown table
    .venv/bin/python bench/run.py cli        # only some of: cli spark horovod serving

1. CLI start:  `plinth --help`                         vs `python -c pass`
2. Spark:      the example job via `plinth job submit` vs a hand-written PySpark script run
               with spark-submit directly (bench/handwritten_preprocess.py), same data and conf;
               plus the hand-written script submitted through plinth, which splits the gap into
               Plinth's own overhead and the cost of the shared Python feature transform
3. Horovod:    the training job with 2 workers          vs 1 worker (global examples/s)
4. Serving:    p50/p99 over HTTP through KServe's model server (wrk, a compiled load generator,
               so the client does not eat the 2 cores the way a Python client would)
                                                        vs the same model called in-process

Everything runs in a throw-away project directory, so the developer's .plinth/ is untouched.
Results are also written to bench/results.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXAMPLE = REPO / "examples" / "ctr"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def write_results(results: dict, file_name: str) -> None:
    """Close a run's conditions (load average, end time) and write bench/<file_name>."""
    from datetime import datetime, timezone

    results["conditions"] |= {"load average after": [round(x, 2) for x in os.getloadavg()],
                              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (REPO / "bench" / file_name).write_text(json.dumps(results, indent=2) + "\n")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout + result.stderr


def plinth(env: dict[str, str], *args: str) -> str:
    return timed([str(BIN / "plinth"), *args], env)[1]


def make_project(root: Path) -> dict[str, str]:
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    return {**os.environ, "PLINTH_PROJECT_DIR": str(root), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def job_variant(root: Path, source: Path, **changes: str) -> Path:
    """A copy of an example job file with its script made absolute and some keys replaced."""
    import yaml

    spec = yaml.safe_load(source.read_text())
    spec["script"] = str(source.parent / spec["script"])
    spec.update(changes)
    path = root / f"{spec['name']}-{len(list(root.glob('*.job.yaml')))}.job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def bench_cli(env: dict[str, str], runs: int = 15) -> dict:
    log(f"CLI start: plinth --help vs python -c pass ({runs} runs each)")
    samples: dict[str, list[float]] = {"plinth --help": [], "python -c pass": []}
    for _ in range(runs):  # interleaved so both see the same machine state
        samples["plinth --help"].append(timed([str(BIN / "plinth"), "--help"], env)[0])
        samples["python -c pass"].append(timed([sys.executable, "-c", "pass"], env)[0])
    return {name: round(statistics.median(values) * 1000, 1) for name, values in samples.items()}


def bench_spark(root: Path, env: dict[str, str], storage: Path) -> dict:
    log("Spark: plinth job submit (generated) vs hand-written PySpark, 3 runs each")
    job = job_variant(root, EXAMPLE / "preprocess.job.yaml")
    conf = ["--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.memory=2g"]
    script = REPO / "bench" / "handwritten_preprocess.py"
    handwritten = [str(BIN / "spark-submit"), "--master", "local[2]", *conf, str(script), "--raw", f"{storage}/ctr/raw", "--out", str(root / "handwritten")]
    handwritten_job = job_variant(root, job, name="handwritten", script=str(script), args=["--raw", "${storage}/ctr/raw", "--out", "${output_dir}/features"])
    submit = [str(BIN / "plinth"), "job", "submit", "--wait", "-f"]
    generated, baseline, through_plinth = [], [], []
    for _ in range(3):  # interleaved, best of 3 each (other work on the machine weighs on every side)
        generated.append(timed([*submit, str(job)], env)[0])
        baseline.append(timed(handwritten, {**env, "PYSPARK_PYTHON": sys.executable})[0])
        through_plinth.append(timed([*submit, str(handwritten_job)], env)[0])
    return {
        "plinth job submit (s)": round(min(generated), 1),
        "hand-written spark-submit (s)": round(min(baseline), 1),
        "hand-written via plinth job submit (s)": round(min(through_plinth), 1),
    }


def bench_horovod(root: Path, env: dict[str, str]) -> dict:
    log("Horovod: the training job with 2 workers vs 1 worker")
    figures = {}
    for workers in (2, 1):
        job = job_variant(root, EXAMPLE / "train.job.yaml", workers=workers)
        elapsed, output = timed([str(BIN / "plinth"), "job", "submit", "-f", str(job), "--wait"], env)
        rates = [float(x) for x in re.findall(r"examples/s=([0-9.]+)", output)]
        auc = re.findall(r"auc=([0-9.]+)", output)
        # The first epoch includes graph tracing and warm-up; later epochs are steady state.
        steady = rates[1:] or rates
        figures[f"{workers} worker{'s' * (workers > 1)}"] = {"examples/s": round(statistics.mean(steady)), "wall (s)": round(elapsed, 1), "auc": float(auc[-1]) if auc else None}
    return figures


def bench_serving(root: Path, env: dict[str, str], duration: int = 10) -> dict:
    log("Serving: KServe model server over HTTP (wrk) vs in-process call")
    plinth(env, "model", "register", "ctr", "--job", "ctr-train")
    port = 18500
    plinth(env, "model", "serve", "ctr", "--port", str(port))
    figures: dict = {}
    try:
        payload = json.loads((EXAMPLE / "request.json").read_text())
        single = {"instances": payload["instances"][:1]}
        wrk = shutil.which("wrk")
        if wrk:
            script = root / "post.lua"
            script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(json.dumps(single))}\n')
            for connections in (1, 8):
                out = subprocess.run(
                    [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}/v1/models/ctr:predict"],
                    capture_output=True, text=True, check=True,
                ).stdout
                figures[f"HTTP, concurrency {connections}"] = _wrk_figures(out)
        else:
            log("wrk not found (apt-get install wrk): HTTP latency not measured")
            figures["HTTP"] = "not measured: wrk not installed"
        figures["in-process"] = _in_process(env, single)
    finally:
        plinth(env, "model", "stop", "ctr")
    return figures


def _wrk_figures(output: str) -> dict:
    def millis(text: str) -> float:
        value, unit = re.match(r"([0-9.]+)(us|ms|s)", text).groups()
        return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)

    # wrk prints "50%  1.23ms"; wrk2 prints "50.000%  1.23ms"
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", output, re.M))
    rate = re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"p50 (ms)": millis(percentiles["50"]), "p99 (ms)": millis(percentiles["99"]), "req/s": round(float(rate)), "errors": int(errors.group(1)) if errors else 0}


def _in_process(env: dict[str, str], request: dict, calls: int = 2000) -> dict:
    """The same model and feature transform, called in this process: the floor for serving."""
    code = f"""
import json, statistics, time, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
from platform_cli.features import FeatureSpec, transform
from platform_cli.registry import ModelRegistry
from platform_cli.spec.stack import load_stack
stack = load_stack("local")
model_dir = ModelRegistry(stack.tracking_uri, stack.artifact_root).model_dir("ctr")
spec = FeatureSpec.load(model_dir / "feature_spec.json")
predict = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
rows = json.loads({json.dumps(json.dumps(request))})["instances"]
def call():
    inputs = transform(spec, rows)
    return predict(cat=tf.constant(inputs["cat"]), num=tf.constant(inputs["num"]))["probability"].numpy()
for _ in range(100): call()
samples = []
for _ in range({calls}):
    t = time.perf_counter(); call(); samples.append((time.perf_counter() - t) * 1000)
samples.sort()
inputs = transform(spec, rows)
cat, num = tf.constant(inputs["cat"]), tf.constant(inputs["num"])
def median_ms(fn):
    times = []
    for _ in range({calls}):
        t = time.perf_counter(); fn(); times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)
print(json.dumps({{"p50 (ms)": round(samples[len(samples)//2], 3), "p99 (ms)": round(samples[int(len(samples)*0.99)], 3), "calls/s": round(1000 / statistics.mean(samples)),
                  "feature transform p50 (ms)": median_ms(lambda: transform(spec, rows)), "model call p50 (ms)": median_ms(lambda: predict(cat=cat, num=num))}}))
"""
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def markdown(results: dict) -> str:
    cli, spark, horovod, serving = results["cli"], results["spark"], results["horovod"], results["serving"]
    lines = [
        "| comparison | Plinth | baseline |",
        "|---|---|---|",
        f"| CLI start, median of 15 | `plinth --help` {cli['plinth --help']} ms | `python -c pass` {cli['python -c pass']} ms |",
        f"| Spark preprocessing, best of 3 | `plinth job submit` {spark['plinth job submit (s)']} s | hand-written `spark-submit` {spark['hand-written spark-submit (s)']} s |",
        f"| Plinth's own overhead on a Spark job, best of 3 | hand-written script via `plinth job submit` {spark['hand-written via plinth job submit (s)']} s | the same script with `spark-submit` {spark['hand-written spark-submit (s)']} s |",
        f"| Horovod training, steady-state epochs | 2 workers {horovod['2 workers']['examples/s']} examples/s | 1 worker {horovod['1 worker']['examples/s']} examples/s |",
    ]
    inproc = serving["in-process"]
    for key, value in serving.items():
        if key.startswith("HTTP") and isinstance(value, dict):
            lines.append(
                f"| Serving, {key}, batch 1 | model server p50 {value['p50 (ms)']} ms, p99 {value['p99 (ms)']} ms, {value['req/s']} req/s | in-process p50 {inproc['p50 (ms)']} ms, p99 {inproc['p99 (ms)']} ms |"
            )
    lines.append(f"| In-process call, split | feature transform p50 {inproc['feature transform p50 (ms)']} ms | model call p50 {inproc['model call p50 (ms)']} ms |")
    return "\n".join(lines)


SECTIONS = ("cli", "spark", "horovod", "serving")


def main(argv: list[str]) -> int:
    wanted = argv or list(SECTIONS)
    if unknown := set(wanted) - set(SECTIONS):
        raise SystemExit(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    results_file = REPO / "bench" / "results.json"
    # Sections not run this time keep their last figures, so the table stays whole.
    results = json.loads(results_file.read_text()) if results_file.exists() and argv else {}
    with tempfile.TemporaryDirectory(prefix="plinth-bench-") as tmp:
        root = Path(tmp)
        env = make_project(root)
        storage = root / ".plinth" / "local" / "storage"
        benches = {
            "cli": lambda: bench_cli(env),
            "spark": lambda: bench_spark(root, env, storage),
            "horovod": lambda: bench_horovod(root, env),
            "serving": lambda: bench_serving(root, env),
        }
        if set(wanted) - {"cli"}:
            log("generating the example data")
            plinth(env, "job", "submit", "-f", str(job_variant(root, EXAMPLE / "generate.job.yaml")), "--wait")
            if "spark" not in wanted:  # training needs features
                plinth(env, "job", "submit", "-f", str(job_variant(root, EXAMPLE / "preprocess.job.yaml")), "--wait")
        if "serving" in wanted and "horovod" not in wanted:  # serving needs a trained model
            plinth(env, "job", "submit", "-f", str(job_variant(root, EXAMPLE / "train.job.yaml")), "--wait")
        for name in SECTIONS:
            if name in wanted:
                results[name] = benches[name]()
                log(f"   {results[name]}")
    results["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
