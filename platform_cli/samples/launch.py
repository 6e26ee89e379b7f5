"""A cluster job's main program when it reads or writes sample tables: resolves the versions it
reads, runs the job, and commits the version it writes when the job succeeds.

On a cluster no Plinth process sees a job end, so the job itself does what the local runner does
(platform_cli.targets.local_runner), in its main process only: the Spark driver, the MPI
launcher (around horovodrun, so every rank has succeeded), the TFJob's chief, the batch Job's
pod. render/cluster.py makes this the main program of such jobs, through LAUNCHER_FILE shipped in
the job's code ConfigMap (spark-submit takes a Python main program as a file, not a module):

    python /opt/plinth/job/plinth_launch.py SCRIPT ARGS...           the script, in this process
    python /opt/plinth/job/plinth_launch.py --exec PROGRAM ARGS...   a program (horovodrun), as a child

What it reads from the environment the renderer sets:

    PLINTH_SAMPLE_OUTPUT   the SampleOutput the job writes (JSON), absent when it writes none
    PLINTH_SAMPLE_INPUTS   the SampleInputs its args and env name (JSON list)
    PLINTH_JOB_ID, PLINTH_JOB_NAME, PLINTH_STACK, PLINTH_OUTPUT_DIR (every job has them)

In order:
1. A job that already committed its version (a retried driver whose commit went through) exits
   0 without running again: running would rewrite ${sample_dir}, the files of that version.
2. Every version it reads is resolved once, `@latest` to the table's newest version now, the
   `<table>@latest` locations in its args and env become `<table>@v<N>`, and the versions, with
   their digests, go to ${output_dir}/samples.json (job_outputs.read_samples), which
   `plinth job status` and `plinth model register` read for the job's lineage.
3. The script runs as `python SCRIPT ARGS` would run it (runpy: same sys.argv, `__main__`,
   sys.path[0], exit code); a program runs as a child with SIGTERM passed on.
4. Exit code 0: commit through table.commit_job_output (the local runner's path, with the same
   job record: id, name, stack), once per job id. Any other exit code is the launcher's own and
   nothing is committed; a commit that fails makes the job fail (the engine's retry runs it again).

Replicas that are not the job's main process (a TFJob's workers and parameter servers, told by
TF_CONFIG) only run the script.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from typing import NoReturn

from platform_cli.samples import SampleInput, SampleOutput, split_location

LAUNCHER_FILE = "plinth_launch.py"
# The file in the code ConfigMap: the module, run as the job's main program.
LAUNCHER_SOURCE = (
    "# Plinth's launcher (platform_cli.samples.launch): runs the job, then commits its sample table version.\n"
    "from platform_cli.samples.launch import finish, main\n\nfinish(main())\n"
)
EXEC = "--exec"
OUTPUT_ENV = "PLINTH_SAMPLE_OUTPUT"
INPUTS_ENV = "PLINTH_SAMPLE_INPUTS"
MAIN_TF_ROLES = ("chief", "master")


def launcher_env(inputs: list[SampleInput], output: SampleOutput | None) -> dict[str, str]:
    """What the renderer tells the launcher (module docstring), as container env."""
    env = {INPUTS_ENV: json.dumps([i.model_dump(mode="json", include={"ref", "table", "version", "location"}) for i in inputs])} if inputs else {}
    if output is not None:
        env[OUTPUT_ENV] = output.model_dump_json(include={"table", "location", "dir", "mode", "partition_by"})
    return env


def is_main_replica(environ: dict[str, str]) -> bool:
    """Whether this process commits: every job's single main process, a TFJob's chief only."""
    tf_config = environ.get("TF_CONFIG")
    if not tf_config:
        return True
    return (json.loads(tf_config).get("task") or {}).get("type") in MAIN_TF_ROLES


def pin_latest(values: list[str], resolved: dict[str, str]) -> list[str]:
    """`values` with each `<table>@latest` location replaced by the version it resolved to."""
    pinned = []
    for value in values:
        for latest, version in resolved.items():
            value = value.replace(latest, version)
        pinned.append(value)
    return pinned


def exit_status(code: object) -> int:
    """SystemExit's code as the process exit status, as the interpreter maps it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def resolve(inputs: list[SampleInput]) -> list[SampleInput]:
    """Each input at the version it names now (`@latest`: the newest), with its digest and rows."""
    from platform_cli.samples.table import describe

    found = []
    for sample in inputs:
        table, version = split_location(sample.location)
        info = describe(table, version)
        found.append(sample.model_copy(update={"version": info.version, "location": info.location, "digest": info.digest, "rows": info.rows}))
    return found


def run_script(script: str, args: list[str]) -> int:
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        return exit_status(exit_.code)
    return 0


def run_program(command: list[str]) -> int:
    child = subprocess.Popen(command)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda sig, _frame: child.send_signal(sig))
    code = child.wait()
    return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it


def _say(message: str) -> None:
    print(f"[plinth] {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_program = argv[:1] == [EXEC]
    command = argv[1:] if as_program else argv
    if not command:
        print(f"usage: python -m platform_cli.samples.launch [{EXEC}] SCRIPT|PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    if not is_main_replica(dict(os.environ)):
        return run_program(command) if as_program else run_script(command[0], command[1:])

    from platform_cli import job_outputs, storage
    from platform_cli.errors import PlinthError
    from platform_cli.samples.table import commit_job_output, committed_by, committed_line

    job = {"id": os.environ["PLINTH_JOB_ID"], "name": os.environ["PLINTH_JOB_NAME"], "stack": os.environ["PLINTH_STACK"]}
    output = SampleOutput.model_validate_json(os.environ[OUTPUT_ENV]) if os.environ.get(OUTPUT_ENV) else None
    inputs = [SampleInput.model_validate(i) for i in json.loads(os.environ.get(INPUTS_ENV) or "[]")]
    try:
        if output is not None and (done := committed_by(output.location, job["id"])) is not None:
            _say(f"job {job['id']} already committed sample table {done.table} version {done.version}; not running it again")
            return 0
        if inputs:
            resolved = resolve(inputs)
            latest = {i.location: r.location for i, r in zip(inputs, resolved, strict=True) if i.version is None}
            command = pin_latest(command, latest)
            for key, value in list(os.environ.items()):
                os.environ[key] = pin_latest([value], latest)[0]
            storage.write_json(job_outputs.samples_file(os.environ["PLINTH_OUTPUT_DIR"]), [r.model_dump(mode="json") for r in resolved])
            _say("reads " + ", ".join(f"sample table {r.table} version {r.version} ({r.digest})" for r in resolved))
    except PlinthError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    code = run_program(command) if as_program else run_script(command[0], command[1:])
    if code != 0 or output is None:
        return code
    started = time.perf_counter()
    try:
        version, committed = commit_job_output(output, job)
    except PlinthError as error:
        print(f"error: the job succeeded but its sample table version was not committed: {error}", file=sys.stderr)
        return 1
    _say(committed_line(version, time.perf_counter() - started) if committed else f"sample table {version.table} version {version.version} was already committed by job {job['id']}")
    return 0


def finish(code: int) -> NoReturn:
    """End the process with the job's exit status once Python's exit handlers have run (Spark's,
    MLflow's, the script's own), skipping only the C++ static destructors after them: there a
    native thread pool still alive (Arrow's, which Delta reads and Parquet writes use) aborts an
    interpreter that exits normally ("terminate called without an active exception", SIGABRT),
    which turned about one succeeded run in eight into a failed job on a loaded machine."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    finish(main())
