"""Sharded embeddings on parameter servers: resident memory of each parameter server and
training speed for the CTR model's large variant (10 004 999 embedding rows x 8 deep + 1 wide
dimensions, Adagrad: one slot per parameter) as 1, 2 and 4 shards on as many servers, and as the
unsharded job (one server, no partitioner: the speed reference), one after another in one run
on this machine.

    .venv/bin/python bench/sharding.py                # ~15 minutes on 2 cores
    .venv/bin/python bench/sharding.py --shards 1 2   # fewer configurations
    .venv/bin/python bench/sharding.py --allocators platform --no-unsharded   # fewer still

Every configuration is the real example script (examples/ctr/train_ps.py) under the local
platform's launcher (platform_cli.targets.local_tf_ps), one worker, on synthetic features shaped
like preprocess-large.job.yaml's (3 id fields of 3 333 333 buckets, 5 context fields of 1 000;
random ids, so a batch touches scattered rows), 2 epochs. The partitioner environment is what
the platform renders for `sharding: {shards: N}` (platform_cli.kinds.tf_ps.sharding_env), and
each sharded configuration runs twice: with the parameter servers' environment the platform sets
(PARAMETER_SERVER_ENV: TensorFlow's system allocator) and, as the baseline, with TensorFlow's
default (oneDNN's pooling allocator), one right after the other.

Memory: psutil RSS of every parameter-server process, sampled every 0.2 s from start to end
(peak and last sample), and the kernel's high-water mark (VmHWM, the highest read); the
samples are kept as a timeline next to the moments the chief's log marks (variables and slots
created, each epoch ended and checkpointed, evaluated, exported), and the table gives each
server's RSS at those moments. Each
server is held against two bounds above the RSS of a parameter server that holds no variable
(started alone first, the "baseline"): the target, (tables + optimizer slots) / N x 1.2, and
what the TFJob requests for it, (tables + slots) / N x SHARD_HEADROOM (platform_cli/kinds/tf_ps.py);
it exits non-zero if a server exceeds the latter. Speed: examples/s of the second epoch (the
first also traces the step), from the job's metrics file. Writes bench/results-sharding.json and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
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
EXAMPLE = REPO / "examples" / "ctr"

ID_BUCKETS, ID_FIELDS, CONTEXT_BUCKETS, CONTEXT_FIELDS = 3_333_333, 3, 1000, 5
ROWS = ID_FIELDS * ID_BUCKETS + CONTEXT_FIELDS * CONTEXT_BUCKETS
DIMS = 8 + 1  # deep embedding + wide weight per id
SLOTS = 1  # Adagrad's accumulator
TRAIN_ROWS, BATCH, EPOCHS = 8192, 1024, 2
SAMPLE_SECONDS = 0.2


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def write_features(root: Path) -> None:
    """preprocess.py's output format at the large variant's id spaces."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from platform_cli.features import CategoricalFeature, FeatureSpec, NumericFeature

    spec = FeatureSpec(
        categorical=[CategoricalFeature(name=f"id{i}", buckets=ID_BUCKETS) for i in range(ID_FIELDS)]
        + [CategoricalFeature(name=f"context{i}", buckets=CONTEXT_BUCKETS) for i in range(CONTEXT_FIELDS)],
        numeric=[NumericFeature(name="age")], label="clicked",
    )
    rng = np.random.default_rng(5)
    root.mkdir(parents=True)
    spec.save(root / "feature_spec.json")
    for split, n in (("train", TRAIN_ROWS), ("eval", 2048)):
        cat = np.concatenate([rng.integers(0, ID_BUCKETS, (n, ID_FIELDS)), rng.integers(0, CONTEXT_BUCKETS, (n, CONTEXT_FIELDS))], 1)
        num = rng.normal(size=(n, 1)).astype(np.float32)
        label = (rng.random(n) < 1 / (1 + np.exp(-(num[:, 0] + (cat[:, 3] < 500) - 1)))).astype(np.float32)
        table = pa.table({"cat": pa.array(list(cat), pa.list_(pa.int64())), "num": pa.array(list(num), pa.list_(pa.float32())), "label": label})
        (root / split).mkdir()
        pq.write_table(table, root / split / "part-0.parquet")


def high_water_mark(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def environment() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def baseline_rss() -> int:
    """RSS of a parameter server that serves but holds no variable."""
    import psutil

    from platform_cli.targets.local_tf_ps import cluster_spec, free_ports, tf_config

    cluster = cluster_spec(1, 1, free_ports(3))
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "train_ps.py"), "--features", "-", "--export-dir", "-", "--metrics-file", "-", "--checkpoint-dir", "-"],
        env={**environment(), **allocator_env("platform"), "TF_CONFIG": tf_config(cluster, "ps", 0)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=EXAMPLE,
    )
    try:
        for line in server.stdout:
            if "serving at" in line:
                break
        time.sleep(3)
        return psutil.Process(server.pid).memory_info().rss
    finally:
        server.terminate()
        server.wait(timeout=30)


# The chief's log lines that mark a phase of the job, and what the phase is called.
PHASES = {"embeddings: ": "variables and slots created", "epoch 1/": "epoch 1 + checkpoint", "epoch 2/": "epoch 2 + checkpoint",
          "eval auc": "evaluated", "exported ": "exported"}


def allocator_env(allocator: str) -> dict[str, str]:
    """The parameter servers' environment: the platform's, or none (TensorFlow's defaults)."""
    from platform_cli.kinds.tf_ps import PARAMETER_SERVER_ENV

    return dict(PARAMETER_SERVER_ENV) if allocator == "platform" else {}


def run(shards: int, partitioned: bool, allocator: str, features: Path, work: Path) -> dict:
    """One training job with `shards` parameter servers (not `partitioned`: one server, no
    partitioner), its servers' memory."""
    import psutil

    from platform_cli.kinds.tf_ps import EmbeddingTables, Sharding, sharding_env

    name = f"shards-{shards}-{allocator}" if partitioned else "unsharded"
    out = work / name
    env = environment()
    if partitioned:
        env.update(sharding_env(Sharding(shards=shards, embeddings=EmbeddingTables(rows=ROWS, dims=DIMS), optimizerSlots=SLOTS)))
    ps_env = [arg for key, value in allocator_env(allocator).items() for arg in ("--ps-env", f"{key}={value}")]
    command = [
        sys.executable, "-m", "platform_cli.targets.local_tf_ps", "--workers", "1", "--ps", str(shards), *ps_env, "--",
        sys.executable, str(EXAMPLE / "train_ps.py"), "--features", str(features), "--export-dir", str(out / "model"),
        "--metrics-file", str(out / "metrics.json"), "--checkpoint-dir", str(out / "checkpoints"),
        "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--optimizer", "adagrad", "--lr", "0.05",
    ]
    log_path = work / f"{name}.log"
    started = time.monotonic()
    launcher = subprocess.Popen(command, env=env, cwd=EXAMPLE, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    peak_rss, last_rss, hwm, timeline, phases = {}, {}, {}, {}, []
    with log_path.open() as log_lines:
        while launcher.poll() is None:
            now = round(time.monotonic() - started, 1)
            for child in psutil.Process(launcher.pid).children():
                try:
                    role = json.loads(child.environ().get("TF_CONFIG", "{}")).get("task", {})
                    if role.get("type") == "ps":
                        last_rss[role["index"]] = child.memory_info().rss
                        peak_rss[role["index"]] = max(peak_rss.get(role["index"], 0), last_rss[role["index"]])
                        hwm[role["index"]] = max(hwm.get(role["index"], 0), high_water_mark(child.pid))  # 0 once it is a zombie
                        timeline.setdefault(role["index"], []).append([now, round(last_rss[role["index"]] / 1e6)])
                except (psutil.Error, OSError):
                    pass  # it ended between the listing and the reading
            while True:  # what the chief printed since the last sample, timed to this one
                position, line = log_lines.tell(), log_lines.readline()
                if not line.endswith("\n"):  # nothing more, or half-written: read it whole next time
                    log_lines.seek(position)
                    break
                marker = next((phase for prefix, phase in PHASES.items() if line.startswith(prefix)), None)
                if marker:
                    phases.append({"phase": marker, "seconds": now, "ps_rss_mb": [round(last_rss[i] / 1e6) for i in sorted(last_rss)]})
            time.sleep(SAMPLE_SECONDS)
    elapsed = time.monotonic() - started
    log_text = log_path.read_text()
    if launcher.returncode != 0:
        raise SystemExit(f"error: the {shards}-shard job ({allocator} allocator) failed:\n{log_text[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out)  # its checkpoints and model: 2 GB a configuration, the disk's not the figure's
    layout = next(line for line in log_text.splitlines() if line.startswith("embeddings: "))
    return {
        "shards": shards if partitioned else None, "parameter_servers": shards, "allocator": allocator, "ps_env": allocator_env(allocator),
        "layout": layout, "seconds": round(elapsed, 1),
        "examples_per_sec": metrics["examples_per_sec"], "auc": metrics["auc"],
        "ps_peak_rss_mb": [round(peak_rss[i] / 1e6) for i in sorted(peak_rss)],
        "ps_vmhwm_mb": [round(hwm[i] / 1e6) for i in sorted(hwm)],
        "ps_final_rss_mb": [round(last_rss[i] / 1e6) for i in sorted(last_rss)],
        "phases": phases, "ps_rss_timeline": {str(i): timeline[i] for i in sorted(timeline)},
    }


def label(run: dict) -> str:
    return "1 (unsharded job)" if run["shards"] is None else str(run["shards"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--allocators", nargs="+", choices=["platform", "tensorflow"], default=["platform", "tensorflow"],
                        help="the parameter servers' environment: the platform's (PARAMETER_SERVER_ENV) and/or TensorFlow's defaults")
    parser.add_argument("--unsharded", action=argparse.BooleanOptionalAction, default=True, help="also the unsharded job (the speed reference)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results-sharding.json"))
    options = parser.parse_args()

    from platform_cli.kinds.tf_ps import SHARD_HEADROOM

    load_before = os.getloadavg()
    held = ROWS * DIMS * 4 * (1 + SLOTS)
    with tempfile.TemporaryDirectory(prefix="plinth-bench-sharding-") as tmp:
        work = Path(tmp)
        log(f"features: {ROWS} embedding rows x {DIMS} float32 (+{SLOTS} slot): {held / 1e6:.0f} MB to hold")
        write_features(work / "features")
        baseline = baseline_rss()
        log(f"baseline: a parameter server holding nothing has RSS {baseline / 1e6:.0f} MB")
        runs = []
        configurations = [(1, False, "platform")] if options.unsharded else []
        configurations += [(s, True, a) for s in options.shards for a in options.allocators]
        for shards, partitioned, allocator in configurations:
            log(f"training with {shards} parameter server(s), {'sharded' if partitioned else 'unsharded'}, {allocator} allocator")
            result = run(shards, partitioned, allocator, work / "features", work)
            # The kernel's high-water mark catches what lives shorter than a sampling period.
            peak = max(result["ps_peak_rss_mb"] + result["ps_vmhwm_mb"])
            result["target_mb"] = round((baseline + held / shards * 1.2) / 1e6)
            result["sized_mb"] = round((baseline + held / shards * SHARD_HEADROOM) / 1e6)
            result["within_target"] = peak <= result["target_mb"]
            result["within_sized"] = peak <= result["sized_mb"]
            result["resident_over_shard"] = round((peak * 1e6 - baseline) / (held / shards), 2)
            # What a server keeps once everything exists (its variables, slots, a trained state).
            exported = next((p["ps_rss_mb"] for p in result["phases"] if p["phase"] == "exported"), None)
            result["steady_over_shard"] = round((max(exported) * 1e6 - baseline) / (held / shards), 2) if exported else None
            log(json.dumps(result))
            runs.append(result)
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "embedding_rows": ROWS, "dims": DIMS, "optimizer_slots": SLOTS, "tables_and_slots_mb": round(held / 1e6),
        "shard_headroom": SHARD_HEADROOM, "train_rows": TRAIN_ROWS, "batch": BATCH, "epochs": EPOCHS, "baseline_rss_mb": round(baseline / 1e6), "runs": runs,
    }
    Path(options.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"baseline (a parameter server holding nothing): {results['baseline_rss_mb']} MB; tables + slots: {results['tables_and_slots_mb']} MB")
    print(f"| parameter servers | allocator | RSS per server, peak sampled (MB) | VmHWM (MB) | at export (MB) | (peak - baseline) / shard | at export: (RSS - baseline) / shard | target: baseline + shard x 1.2 (MB) | requested: baseline + shard x {SHARD_HEADROOM} (MB) | examples/s | job seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        exported = next((p["ps_rss_mb"] for p in r["phases"] if p["phase"] == "exported"), [])
        print(f"| {label(r)} | {r['allocator']} | {', '.join(map(str, r['ps_peak_rss_mb']))} | {', '.join(map(str, r['ps_vmhwm_mb']))} | "
              f"{', '.join(map(str, exported))} | {r['resident_over_shard']} | {r['steady_over_shard']} | "
              f"{r['target_mb']} | {r['sized_mb']} | {r['examples_per_sec']} | {r['seconds']} |")
    print("\nRSS of each parameter server (MB) when the chief's log marks a phase:\n")
    print(f"| parameter servers | allocator | {' | '.join(PHASES.values())} |")
    print("|---|---|" + "---|" * len(PHASES))
    for r in runs:
        at = {p["phase"]: ", ".join(map(str, p["ps_rss_mb"])) for p in r["phases"]}
        print(f"| {label(r)} | {r['allocator']} | {' | '.join(at.get(phase, '-') for phase in PHASES.values())} |")
    # The platform's parameter servers must fit what the TFJob requests for them.
    return 0 if all(r["within_sized"] for r in runs if r["allocator"] == "platform") else 1


if __name__ == "__main__":
    sys.exit(main())
