"""What committing a sample table version adds to the CTR preprocessing job, in one run.

    .venv/bin/python bench/samples.py                  # 3 runs of each, the example's 40,000 rows (~8 minutes)
    .venv/bin/python bench/samples.py --rows 200000 --repeats 2

Both sides run examples/ctr/preprocess.py on the same raw impressions through `plinth job submit
--wait` in one throw-away project, alternating which goes first:

- baseline: the job writes its Parquet and feature spec to `${output_dir}/features` and
  declares no output; nothing is committed;
- library: the example's preprocess.job.yaml: it writes the same files to `${sample_dir}` and the
  local platform commits them as the next version of sample table ctr when the job succeeds
  (footer statistics, a sha256 of every file, one Delta commit).

The job's time is its record's `started` to `finished`: the job process plus, on the library
side, the commit, which happens before the record says Succeeded (the runner logs the commit's
own time, also reported). The median of each side and
their difference are reported, with the load average (the machine is shared). On a busy
machine Spark's own variance is larger than the commit, so the commit is also timed alone:
each library job's files committed again into a fresh table, in a new process (importing
deltalake and pyarrow included, as the runner pays it).

Results: bench/results-samples.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXAMPLE = REPO / "examples" / "ctr"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def plinth(project: Path, *args: str) -> str:
    env = {**os.environ, "PLINTH_PROJECT_DIR": str(project), "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("PLINTH_STACK", None)
    result = subprocess.run([str(BIN / "plinth"), *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"plinth {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def job_seconds(project: Path, job_file: Path) -> tuple[float, float | None, str]:
    """The job's time (record: started to finished) and, for a job that committed a version, the
    commit's own time as the runner logged it."""
    output = plinth(project, "job", "submit", "-f", str(job_file), "--wait")
    job_id = re.search(r"job/(\S+) submitted", output).group(1)
    record = json.loads(plinth(project, "job", "status", job_id, "-o", "json"))
    started, finished = (datetime.fromisoformat(record[k]) for k in ("started", "finished"))
    committed = re.search(r"committed sample table .* in ([0-9.]+)s", output)
    return (finished - started).total_seconds(), float(committed.group(1)) if committed else None, job_id


COMMIT = """
import sys, time
started = time.perf_counter()
from platform_cli.samples.table import commit_version
commit_version(sys.argv[1], sys.argv[2], mode="overwrite", partition_by="split")
print(time.perf_counter() - started)
"""


def commit_alone(project: Path, job_id: str) -> float:
    """Seconds to commit job `job_id`'s files (copied beside a fresh table) as its first version."""
    source = project / ".plinth" / "local" / "storage" / "samples" / "ctr" / job_id
    table = project / "alone" / job_id
    shutil.copytree(source, table / "files")
    result = subprocess.run([sys.executable, "-c", COMMIT, str(table), str(table / "files")], capture_output=True, text=True, check=True)
    return float(result.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000, help="raw impressions (the example's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results-samples.json")
    args = parser.parse_args()

    project = Path(tempfile.mkdtemp(prefix="plinth-bench-samples-"))
    try:
        shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
        shutil.copytree(REPO / "stacks", project / "stacks")
        jobs = project / "jobs"
        jobs.mkdir()
        for name in ("preprocess.py", "generate.py"):
            shutil.copy(EXAMPLE / name, jobs / name)
        generate = (EXAMPLE / "generate.job.yaml").read_text().replace('"40000"', f'"{args.rows}"')
        (jobs / "generate.job.yaml").write_text(generate)
        library = jobs / "library.job.yaml"
        library.write_text((EXAMPLE / "preprocess.job.yaml").read_text())
        baseline = jobs / "baseline.job.yaml"
        baseline.write_text(library.read_text().replace('"${sample_dir}"', '"${output_dir}/features"').replace("output: {samples: ctr, mode: overwrite, partitionBy: split}\n", ""))
        assert "output:" not in baseline.read_text() and "${output_dir}/features" in baseline.read_text()

        load_start = os.getloadavg()
        log(f"generating {args.rows} rows")
        plinth(project, "job", "submit", "-f", str(jobs / "generate.job.yaml"), "--wait")
        runs: dict[str, list[float]] = {"baseline": [], "library": []}
        commit_in_job: list[float] = []
        for repeat in range(args.repeats):
            order = ("baseline", "library") if repeat % 2 == 0 else ("library", "baseline")
            for side in order:
                seconds, committed, job_id = job_seconds(project, baseline if side == "baseline" else library)
                runs[side].append(seconds)
                if committed is not None:
                    commit_in_job.append(committed)
                log(f"run {repeat + 1}/{args.repeats} {side}: {seconds:.2f} s ({job_id}" + (f", commit {committed:.2f} s)" if committed is not None else ")"))
        versions = json.loads(plinth(project, "data", "versions", "ctr", "-o", "json"))
        commits = [commit_alone(project, v["job"]["id"]) for v in versions]
        load_end = os.getloadavg()
    finally:
        shutil.rmtree(project, ignore_errors=True)

    base, lib = statistics.median(runs["baseline"]), statistics.median(runs["library"])
    results = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": args.rows,
        "repeats": args.repeats,
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "seconds": {side: [round(s, 2) for s in values] for side, values in runs.items()},
        "median_seconds": {"baseline": round(base, 2), "library": round(lib, 2)},
        "added_seconds": round(lib - base, 2),
        "added_percent": round(100 * (lib - base) / base, 1),
        "commit_in_job_seconds": commit_in_job,
        "commit_in_job_percent_of_baseline": round(100 * statistics.median(commit_in_job) / base, 1),
        "commit_alone_seconds": [round(c, 3) for c in commits],
        "commit_alone_percent_of_baseline": round(100 * statistics.median(commits) / base, 1),
        "committed_versions": len(versions),
        "version_bytes": versions[-1]["bytes"],
    }
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
