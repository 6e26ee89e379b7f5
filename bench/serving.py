"""Serving at the machine's limit: Plinth's model server and traffic split, the serving code before
micro-batching, and the peers, side by side in one run with one model and one request.

    .venv/bin/python bench/serving.py                  # ~15 minutes on 2 cores (trains the example model first)
    .venv/bin/python bench/serving.py --model-dir DIR  # a trained CTR model directory instead
    .venv/bin/python bench/serving.py --duration 5 --only plinth,kserve-trivial
    .venv/bin/python bench/serving.py --only protocols --concurrency 1,32 --model-dir DIR   # v1 against v2 only

Every path answers the first row of examples/ctr/request.json, one request per HTTP call, under
`wrk` (Debian package `wrk`, compiled: the client does not compete for the cores the way a Python
client would; one thread, closed loop, keep-alive) at 1, 8 and 32 connections, one run each,
one server at a time:

- before:       the serving code of BASELINE (KServe's FastAPI model server, the pandas transform,
                the SavedModel per request; the Python router), checked out into a temporary directory
- plinth:       the version server now (batching, numpy transform, TFLite), with 1 and 2 workers,
                and through the traffic split (HAProxy), as `plinth model promote` starts them
- protocols:    the same row through the split as KServe's v1 (POST /v1/models/ctr:predict) and
                as the Open Inference Protocol (v2, JSON tensors: POST /v2/models/ctr/infer, and
                to one version, /v2/models/ctr/versions/1/infer), one concurrency at a time with
                the three paths interleaved, after checking that they answer the same prediction
- kserve-trivial: stock KServe 0.15.2 answering with a trivial numpy model (bench/peers/kserve_trivial.py)
- kserve-ctr:   KServe's Python server with the same SavedModel and Plinth's transform (bench/peers/kserve_ctr.py)
- bentoml:      BentoML 1.4 with adaptive batching, same SavedModel and transform (bench/peers/bentoml_ctr.py),
                from its own virtual environment, bench/.venv-peers (created here with uv; BentoML is
                not a Plinth dependency, and it would move two dozen pins of Plinth's lock)

Then, without HTTP, what a request costs in the server's own code (transform and model, 1 and
32 rows), and a py-spy profile of the version server under 32 connections: where the time goes.
Writes bench/results-serving.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from run import EXAMPLE, _wrk_figures, job_variant, make_project, plinth  # noqa: E402

# The serving code the earlier BENCHMARKS.md serving figures measured:
# the last commit before the model server batched requests.
BASELINE = "7c411de"
CONCURRENCY = (1, 8, 32)
PEER_VENV = REPO / "bench" / ".venv-peers"
PEER_PACKAGES = ["bentoml==1.4.40", "tensorflow-cpu==2.15.1", "xxhash", "pandas", "pydantic>=2", "py-spy==0.4.3"]
READY_TIMEOUT_S = 180


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"server exited with code {process.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {READY_TIMEOUT_S} s")


class Server:
    """A server process leading its own process group, stopped with the whole group."""

    def __init__(self, argv: list[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        with log_path.open("ab") as out:
            # cwd: not the repository, whose platform_cli `python -m` would put ahead of PYTHONPATH.
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True, cwd=log_path.parent)
        try:
            wait_ready(ready_url, self.process)
        except BaseException as failure:
            self.stop()
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise SystemExit(f"{failure}\n" + "\n".join(tail)) from None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def wrk(url: str, script: Path, connections: int, duration: int) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    return _wrk_figures(out)


def measure(name: str, url: str, script: Path, duration: int) -> dict:
    wrk(url, script, 8, 1)  # warm-up: first connections, lazy imports, TF tracing
    figures = {}
    for c in CONCURRENCY:
        figures[f"c{c}"] = wrk(url, script, c, duration)
        log(f"{name} c={c}: {figures[f'c{c}']}")
    return figures


def post_script(root: Path, body: dict, name: str = "post.lua") -> Path:
    script = root / name
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(json.dumps(body))}\n')
    return script


def trained_model(root: Path, env: dict[str, str]) -> Path:
    """The README's pipeline on the example data: generate, preprocess, train; the model directory."""
    log("training the example CTR model (generate, preprocess, train)")
    for spec in ("generate", "preprocess", "train"):
        plinth(env, "job", "submit", "-f", str(job_variant(root, EXAMPLE / f"{spec}.job.yaml")), "--wait")
    [model] = [p.parent for p in (root / ".plinth").rglob("saved_model.pb") if (p.parent / "feature_spec.json").exists()][:1]
    return model


def baseline_tree(root: Path) -> Path:
    """BASELINE's platform_cli, unpacked next to the run (no git worktree: nothing changes in the repository)."""
    tree = root / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BASELINE, "platform_cli"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def baseline_model(root: Path, model_dir: Path) -> Path:
    """The model as BASELINE can load it: its feature spec without the `hashing` field, which
    BASELINE's spec does not know (it hashes with SipHash: other ids, the same work)."""
    copy = root / "model-before"
    shutil.copytree(model_dir, copy)
    spec = json.loads((copy / "feature_spec.json").read_text())
    spec.pop("hashing", None)
    (copy / "feature_spec.json").write_text(json.dumps(spec))
    return copy


def peer_venv() -> Path:
    """bench/.venv-peers with BentoML, TensorFlow (CPU) and py-spy, from uv's cache when it can."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {PEER_VENV.relative_to(REPO)} (BentoML, TensorFlow, py-spy) with uv")
        subprocess.run([str(BIN / "uv"), "venv", "-q", "--python", sys.executable, str(PEER_VENV)], check=True)
    subprocess.run([str(BIN / "uv"), "pip", "install", "-q", "--python", str(python), *PEER_PACKAGES], check=True)
    return PEER_VENV


def run_old(root: Path, model_dir: Path, script: Path, duration: int) -> dict:
    tree = baseline_tree(root)
    model_dir = baseline_model(root, model_dir)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    port, router_port = free_port(), free_port()
    results = {}
    server = Server([sys.executable, "-m", "platform_cli.serving.server", "--model-name", "ctr-v1", "--model-dir", str(model_dir),
                     "--http-port", str(port), "--version", "1"], f"http://127.0.0.1:{port}/v1/models/ctr-v1", root / "before-server.log", env)
    try:
        results["before: version server, direct"] = measure("before direct", f"http://127.0.0.1:{port}/v1/models/ctr-v1:predict", script, duration)
        state = root / "before-traffic.json"
        state.write_text(json.dumps({"model": "ctr", "generation": 1, "production": 1, "weights": {"1": 100},
                                     "upstreams": {"1": f"http://127.0.0.1:{port}"}}))
        router = Server([sys.executable, "-m", "platform_cli.serving.router", "--model", "ctr", "--state", str(state), "--port", str(router_port)],
                        f"http://127.0.0.1:{router_port}/v1/models/ctr", root / "before-router.log", env)
        try:
            results["before: through the split (Python router)"] = measure("before split", f"http://127.0.0.1:{router_port}/v1/models/ctr:predict", script, duration)
        finally:
            router.stop()
    finally:
        server.stop()
    return results


def run_plinth(root: Path, model_dir: Path, script: Path, duration: int, profile: bool) -> dict:
    import yaml

    from platform_cli.registry import ModelRegistry
    from platform_cli.serving import local, release
    from platform_cli.spec.stack import load_stack

    results = {}
    stack_file = root / "stacks" / "Pulumi.local.yaml"
    for workers in (1, 2):
        config = yaml.safe_load(stack_file.read_text())
        config["config"]["plinth:serving"]["workers"] = workers
        stack_file.write_text(yaml.safe_dump(config))
        stack = load_stack("local")
        registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
        try:
            release.promote(stack, registry, "ctr", 1, None)
            server = local.find(local.state_dir(stack), "ctr-v1")
            router = release.find_router(stack, "ctr")
            direct, split = f"{server.url}/v1/models/ctr-v1:predict", f"{router.url}/v1/models/ctr:predict"
            wait_all_workers(server, workers)
            suffix = "1 worker" if workers == 1 else f"{workers} workers"
            results[f"plinth: version server, direct ({suffix})"] = measure(f"plinth direct {suffix}", direct, script, duration)
            results[f"plinth: through the split, HAProxy ({suffix})"] = measure(f"plinth split {suffix}", split, script, duration)
            if profile and workers == 1:
                results["profile: version server, 32 connections"] = py_spy(server.pid, direct, script, root)
            results[f"router metrics after the run ({suffix})"] = release.router_state(stack, "ctr")["metrics"]
        finally:
            release.stop(stack, "ctr")
    return results


def v2_body(model_dir: Path, rows: list[dict]) -> dict:
    """The rows as Open Inference Protocol input tensors, one per raw field of the model's spec
    (numbers as FP64, so the prediction is the v1 one to the bit)."""
    spec = json.loads((model_dir / "feature_spec.json").read_text())
    inputs = [{"name": f["name"], "datatype": "BYTES", "shape": [len(rows)], "data": [None if r[f["name"]] is None else str(r[f["name"]]) for r in rows]}
              for f in spec["categorical"]]
    inputs += [{"name": f["name"], "datatype": "FP64", "shape": [len(rows)], "data": [r[f["name"]] for r in rows]} for f in spec["numeric"]]
    return {"inputs": inputs}


def run_protocols(root: Path, model_dir: Path, v1_script: Path, v1_body: dict, duration: int) -> dict:
    """v1 and v2 through the split (1 worker), interleaved per concurrency."""
    from platform_cli.registry import ModelRegistry
    from platform_cli.serving import release
    from platform_cli.spec.stack import load_stack

    stack = load_stack("local")
    body = v2_body(model_dir, v1_body["instances"])
    v2_script = post_script(root, body, "post-v2.lua")
    try:
        release.promote(stack, ModelRegistry(stack.tracking_uri, stack.artifact_root), "ctr", 1, None)
        router = release.find_router(stack, "ctr").url
        paths = {"v1 through the split (HAProxy)": (f"{router}/v1/models/ctr:predict", v1_script),
                 "v2 through the split (HAProxy)": (f"{router}/v2/models/ctr/infer", v2_script),
                 "v2 to version 1 through the split (HAProxy)": (f"{router}/v2/models/ctr/versions/1/infer", v2_script)}
        v1 = json.loads(urllib.request.urlopen(urllib.request.Request(paths["v1 through the split (HAProxy)"][0], json.dumps(v1_body).encode(),
                                                                      {"content-type": "application/json"})).read())["predictions"]
        for name, (url, _) in list(paths.items())[1:]:
            answer = json.loads(urllib.request.urlopen(urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})).read())
            if answer["outputs"][0]["data"] != v1:
                raise SystemExit(f"{name} answered {answer['outputs'][0]['data']}, v1 {v1}")
        for url, script in paths.values():
            wrk(url, script, 8, 1)  # warm-up
        results: dict = {name: {} for name in paths}
        for c in CONCURRENCY:
            for name, (url, script) in paths.items():
                results[name][f"c{c}"] = wrk(url, script, c, duration)
                log(f"{name} c={c}: {results[name][f'c{c}']}")
        return results
    finally:
        release.stop(stack, "ctr")


def protocol_ratios(results: dict) -> dict:
    """v2 against v1 through the split, per concurrency: p50 and req/s ratios (the goal: within 1.2x)."""
    v1, v2 = results["v1 through the split (HAProxy)"], results["v2 through the split (HAProxy)"]
    return {c: {"p50 v2/v1": round(v2[c]["p50 (ms)"] / v1[c]["p50 (ms)"], 3), "req/s v1/v2": round(v1[c]["req/s"] / v2[c]["req/s"], 3)}
            for c in v1}


def wait_all_workers(server, workers: int) -> None:
    """The first worker answers ready; the others load their own model: wait until all listen."""
    import psutil

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children()]
        listening = [p for p in processes if any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
                                                  for c in getattr(p, "net_connections", p.connections)("tcp"))]
        if len(listening) >= workers:
            return
        time.sleep(0.5)
    raise SystemExit(f"only some of {workers} workers listen after {READY_TIMEOUT_S} s")


def run_kserve(root: Path, model_dir: Path, script: Path, duration: int) -> dict:
    results = {}
    for name, argv in (("kserve-trivial", []), ("kserve-ctr", ["--model-dir", str(model_dir)])):
        port = free_port()
        server = Server([sys.executable, str(REPO / "bench" / "peers" / f"{name.replace('-', '_')}.py"), "--http_port", str(port), *argv],
                        f"http://127.0.0.1:{port}/v1/models/ctr", root / f"{name}.log")
        try:
            label = "stock KServe 0.15.2, trivial numpy model" if name == "kserve-trivial" else "KServe 0.15.2, same SavedModel + transform"
            results[label] = measure(name, f"http://127.0.0.1:{port}/v1/models/ctr:predict", script, duration)
        finally:
            server.stop()
    return results


def run_bentoml(root: Path, model_dir: Path, body: dict, duration: int) -> dict:
    venv = peer_venv()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PLINTH_BENCH_MODEL_DIR": str(model_dir), "BENTOML_HOME": str(root / "bentoml")}
    server = Server([str(venv / "bin" / "bentoml"), "serve", "bentoml_ctr:Ctr", "--port", str(port), "--host", "127.0.0.1",
                     "--working-dir", str(REPO / "bench" / "peers")], f"http://127.0.0.1:{port}/readyz", root / "bentoml.log", env)
    try:
        script = root / "bentoml.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(json.dumps(body))}\n')
        return {"BentoML 1.4.40, adaptive batching, same SavedModel + transform": measure("bentoml", f"http://127.0.0.1:{port}/predict", script, duration)}
    finally:
        server.stop()


def py_spy(pid: int, url: str, script: Path, root: Path, seconds: int = 6) -> dict:
    """Sample the version server while wrk keeps 32 connections busy; the share of samples in
    each part of a request (a sample counts for every part on its stack)."""
    spy = peer_venv() / "bin" / "py-spy"
    raw = root / "profile.txt"
    load = subprocess.Popen(["wrk", "-t1", "-c32", f"-d{seconds + 2}s", "-s", str(script), url], stdout=subprocess.DEVNULL)
    time.sleep(1)
    subprocess.run([str(spy), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "500", "--format", "raw",
                    "--output", str(raw), "--nonblocking"], capture_output=True, check=True)
    load.wait()
    # Inclusive: a sample counts for every part on its stack. Self: the innermost Python frame.
    parts = {
        "HTTP protocol (uvicorn httptools_impl)": "httptools_impl.py",
        "request handler (ModelApp.predict)": "predict (platform_cli/serving/server.py",
        "batch processing (SavedModelPredictor.process)": "process (platform_cli/serving/server.py",
        "feature transform (features/transform.py)": "platform_cli/features/transform.py",
        "model call (TFLite interpreter)": "interpreter.py",
        "metrics (serving/metrics.py)": "platform_cli/serving/metrics.py",
    }
    inclusive, leaves, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [frame.replace(str(REPO) + "/", "") for frame in stack.split(";")]
        total += int(count)
        for name, needle in parts.items():
            if any(needle in frame for frame in frames):
                inclusive[name] += int(count)
        leaves[re.sub(r":\d+\)$", ")", frames[-1].split("/site-packages/")[-1])] += int(count)
    return {"samples": total,
            "inclusive": {name: round(inclusive[name] / total, 3) for name in parts},
            "self, top 12": {name: round(count / total, 3) for name, count in leaves.most_common(12)}}


def in_process(model_dir: Path, body: dict, tree: Path | None) -> dict:
    """Transform and model per call without HTTP, in a fresh interpreter (tree: BASELINE's code)."""
    code = f"""
import json, time, os, statistics
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
from platform_cli.features import FeatureSpec, transform
spec = FeatureSpec.load({str(model_dir / 'feature_spec.json')!r})
signature = tf.saved_model.load({str(model_dir)!r}).signatures["serving_default"]
row = json.loads({json.dumps(json.dumps(body))})["instances"]
def median_us(fn, calls=2000):
    for _ in range(100): fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e6, 1)
try:
    from platform_cli.serving.server import SavedModelPredictor
    tflite = SavedModelPredictor("ctr", {str(model_dir)!r}, runtime="tflite")
    tflite.load()
except TypeError:
    tflite = None  # BASELINE has no TFLite runtime
out = {{}}
for n in (1, 32):
    rows = row * n
    inputs = transform(spec, rows)
    out[f"transform, {{n}} rows (us)"] = median_us(lambda: transform(spec, rows))
    out[f"SavedModel signature, {{n}} rows (us)"] = median_us(lambda: signature(**{{k: tf.constant(v) for k, v in inputs.items()}}))
    if tflite is not None:
        out[f"TFLite, {{n}} rows (us)"] = median_us(lambda: tflite.probabilities(inputs))
print(json.dumps(out))
"""
    env = {**os.environ, **({"PYTHONPATH": str(tree)} if tree else {})}
    # cwd: not the repository, whose platform_cli `python -c` would put ahead of PYTHONPATH.
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                            cwd=tempfile.gettempdir()).stdout
    return json.loads(output.strip().splitlines()[-1])


GROUPS = ("before", "plinth", "protocols", "kserve", "bentoml")


def main() -> int:
    global CONCURRENCY
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--model-dir", type=Path, help="a trained CTR model directory (default: train the example)")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="comma-separated wrk connection counts")
    args = parser.parse_args()
    groups = set(args.only.split(","))
    CONCURRENCY = tuple(int(c) for c in args.concurrency.split(","))
    if not shutil.which("wrk") or not shutil.which("haproxy"):
        raise SystemExit("wrk and haproxy are needed (apt-get install wrk haproxy)")

    root = Path(tempfile.mkdtemp(prefix="plinth-bench-serving-"))
    env = make_project(root)
    os.environ["PLINTH_PROJECT_DIR"] = str(root)
    body = {"instances": json.loads((EXAMPLE / "request.json").read_text())["instances"][:1]}
    script = post_script(root, body)
    results: dict = {"conditions": {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "load average before": [round(x, 2) for x in os.getloadavg()],
        "client": "wrk 4.1.0, 1 thread, keep-alive, closed loop", "duration_s": args.duration, "runs": 1,
        "request": "1 row (examples/ctr/request.json's first)", "baseline commit": BASELINE,
    }}
    try:
        model_dir = args.model_dir or trained_model(root, env)
        from platform_cli.registry import ModelRegistry
        from platform_cli.spec.stack import load_stack

        stack = load_stack("local")
        ModelRegistry(stack.tracking_uri, stack.artifact_root).register("ctr", model_dir, {}, {"job_id": "bench"})
        results["conditions"]["model"] = "the example CTR model trained by this run" if args.model_dir is None else str(args.model_dir)
        if "before" in groups:
            results.update(run_old(root, model_dir, script, args.duration))
        if "plinth" in groups:
            results.update(run_plinth(root, model_dir, script, args.duration, profile=not args.no_profile))
        if "protocols" in groups:
            measured = run_protocols(root, model_dir, script, body, args.duration)
            results.update(measured)
            results["v2 against v1 through the split"] = protocol_ratios(measured)
        if "kserve" in groups:
            results.update(run_kserve(root, model_dir, script, args.duration))
        if "bentoml" in groups:
            results.update(run_bentoml(root, model_dir, body, args.duration))
        if groups != {"protocols"}:
            log("in-process costs")
            results["in-process, now"] = in_process(model_dir, body, None)
        if "before" in groups:
            results["in-process, before"] = in_process(root / "model-before", body, root / "baseline")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["conditions"]["load average after"] = [round(x, 2) for x in os.getloadavg()]
    results["conditions"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["conditions"]["concurrency"] = list(CONCURRENCY)

    # A partial run (--only, --concurrency) writes beside the full run's file, not over it.
    full = groups == set(GROUPS) and CONCURRENCY == (1, 8, 32)
    (REPO / "bench" / ("results-serving.json" if full else "results-serving-partial.json")).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    if "v2 against v1 through the split" in results:
        print(json.dumps(results["v2 against v1 through the split"], indent=2))
    return 0


def table(results: dict) -> str:
    lines = ["| path | c=1 p50 ms | c=1 req/s | c=8 req/s | c=8 p99 ms | c=32 req/s | c=32 p50 ms | c=32 p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    missing = {"p50 (ms)": "-", "p99 (ms)": "-", "req/s": "-", "errors": 0}
    for name, figures in results.items():
        if not (isinstance(figures, dict) and any(f"c{c}" in figures and "req/s" in figures[f"c{c}"] for c in (1, 8, 32))):
            continue
        c1, c8, c32 = (figures.get(f"c{c}", missing) for c in (1, 8, 32))
        errors = sum(f["errors"] for f in (c1, c8, c32))
        lines.append(f"| {name} | {c1['p50 (ms)']} | {c1['req/s']} | {c8['req/s']} | {c8['p99 (ms)']} | {c32['req/s']} | {c32['p50 (ms)']} | {c32['p99 (ms)']} | {errors} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
