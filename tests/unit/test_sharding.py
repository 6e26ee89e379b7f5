"""Sharded embeddings on parameter servers: the tf-ps spec's `sharding`, validated at the edge,
rendered into the local launch (server count, partitioner environment) and into a TFJob whose
parameter servers each request memory for their shard, valid against the TFJob schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from platform_cli.errors import PlinthError
from platform_cli.kinds.tf_ps import CREATION_PEAK, SHARD_HEADROOM, TfPsJobSpec
from platform_cli.render.cluster import parse_quantity, render_cluster_job
from platform_cli.render.job import render_job
from platform_cli.render.validate import validate_objects
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from tests.conftest import REPO, write_job

JOB = "kind: tf-ps\nname: big\nscript: big.py\nworkers: 2\nresources: {cpu: 1, memory: 1Gi}\n"
# 10^7 rows x 9 float32 = 360 MB of tables; with Adam's 2 slots, 1080 MB to hold.
TABLES = "embeddings: {rows: 10000000, dims: 9}"


def load(project: Path, sharding: str, extra: str = ""):
    return load_job(write_job(project / "jobs", "big", f"{JOB}{extra}sharding: {{{sharding}}}\n", script=""))


def test_shards_set_the_parameter_server_count(project: Path) -> None:
    spec = load(project, f"shards: 4, {TABLES}").spec
    assert isinstance(spec, TfPsJobSpec)
    assert spec.parameter_servers == 4
    assert spec.sharding.bytes_per_server == 10**7 * 9 * 4 * 3 // 4


def test_max_shard_bytes_decides_how_many_servers(project: Path) -> None:
    # 360 MB in shards of at most 100 MiB: 4 shards (3.4 rounded up).
    spec = load(project, f"maxShardBytes: 100Mi, {TABLES}, optimizerSlots: 1").spec
    assert spec.parameter_servers == 4
    assert spec.sharding.shard_count == 4


@pytest.mark.parametrize(
    ("sharding", "extra", "expected"),
    [
        (TABLES, "", "sharding: set exactly one of shards (a count, e.g. 4) or maxShardBytes (a size, e.g. 256Mi)"),
        (f"shards: 2, maxShardBytes: 1Gi, {TABLES}", "", "sharding: set exactly one of shards"),
        (f"shards: 4, {TABLES}", "parameterServers: 2\n",
         "sharding: 4 shards need 4 parameter servers (one shard each), parameterServers is 2; set parameterServers: 4 or leave it out"),
        (f"maxShardBytes: 1Mi, {TABLES}", "",
         "sharding: maxShardBytes: 1Mi splits the 344Mi of embeddings into 344 shards, more than 64 parameter servers; raise it to at least 6Mi"),
        (f"maxShardBytes: 500m, {TABLES}", "", "sharding.maxShardBytes: '500m' is under 1Ki (or in milli-bytes); write a size such as 256Mi"),
        ("shards: 4", "", "sharding.embeddings: Field required"),
        (f"shards: 65, {TABLES}", "", "sharding.shards: Input should be less than or equal to 64"),
        ("shards: 2, embeddings: {rows: 0, dims: 8}", "", "sharding.embeddings.rows: Input should be greater than or equal to 1"),
        (f"shards: 2, {TABLES}, slots: 2", "", "sharding.slots: unknown key (check its spelling)"),
    ],
)
def test_bad_sharding_is_one_line_naming_the_field_and_the_fix(project: Path, sharding: str, extra: str, expected: str) -> None:
    with pytest.raises(PlinthError) as error:
        load(project, sharding, extra)
    message = str(error.value)
    assert expected in message and "\n" not in message, message
    assert message.startswith(str(project / "jobs" / "big.job.yaml"))


def test_an_explicit_matching_server_count_is_accepted_and_a_dumped_spec_reloads(project: Path) -> None:
    from platform_cli.spec.job import dump_job_spec, parse_job_spec

    spec = load(project, f"shards: 3, {TABLES}", "parameterServers: 3\n").spec
    assert parse_job_spec(dump_job_spec(spec), where="job.yaml") == spec


def test_local_launch_starts_one_server_per_shard_and_tells_the_script_the_partitioner(project: Path) -> None:
    job = load(project, f"shards: 4, {TABLES}")
    launch = render_job(job, load_stack("local"), job_id="big-abcde").documents[0]["spec"]
    command = launch["command"]
    assert command[command.index("--ps") + 1] == "4"
    assert launch["env"]["PLINTH_PS_SHARDS"] == "4"
    assert launch["env"]["PLINTH_EMBEDDING_ROWS"] == "10000000"
    assert "PLINTH_PS_MAX_SHARD_BYTES" not in launch["env"]

    by_size = render_job(load(project, f"maxShardBytes: 100Mi, {TABLES}"), load_stack("local"), job_id="big-abcde").documents[0]["spec"]
    assert by_size["env"]["PLINTH_PS_MAX_SHARD_BYTES"] == str(100 * 2**20)
    assert "PLINTH_PS_SHARDS" not in by_size["env"]


def test_parameter_servers_alone_run_with_the_system_allocator_unless_the_job_says_otherwise(project: Path) -> None:
    # TensorFlow's default (oneDNN's pool) keeps a server's freed initialisation memory for good.
    tfjob = render_cluster_job(load(project, f"shards: 2, {TABLES}"), load_stack("team-feed"), "big-abcde").documents[-1]
    env = {role: {e["name"]: e["value"] for e in spec["template"]["spec"]["containers"][0]["env"]} for role, spec in tfjob["spec"]["tfReplicaSpecs"].items()}
    assert env["PS"]["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] == "1"
    assert "TF_ONEDNN_USE_SYSTEM_ALLOCATOR" not in env["Chief"] and "TF_ONEDNN_USE_SYSTEM_ALLOCATOR" not in env["Worker"]
    assert env["PS"]["PLINTH_PS_SHARDS"] == env["Worker"]["PLINTH_PS_SHARDS"] == "2"  # the job's own environment is everyone's

    launch = render_job(load(project, f"shards: 2, {TABLES}"), load_stack("local"), job_id="big-abcde").documents[0]["spec"]
    command = launch["command"]
    assert command[command.index("--ps-env") + 1] == "TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1"
    assert "TF_ONEDNN_USE_SYSTEM_ALLOCATOR" not in launch["env"]

    overridden = render_cluster_job(
        load(project, f"shards: 2, {TABLES}", extra="env: {TF_ONEDNN_USE_SYSTEM_ALLOCATOR: '0'}\n"), load_stack("team-feed"), "big-abcde"
    ).documents[-1]
    ps_env = overridden["spec"]["tfReplicaSpecs"]["PS"]["template"]["spec"]["containers"][0]["env"]
    assert [e["value"] for e in ps_env if e["name"] == "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] == ["0"]


def test_the_local_launcher_gives_parameter_servers_their_environment_unless_already_set(tmp_path: Path) -> None:
    # Every role writes its task type and the variables in one write (the chief's output and the
    # servers' relayed lines share the launcher's stdout), then servers wait to be stopped.
    script = tmp_path / "role.py"
    script.write_text(
        "import json, os, time\n"
        "task = json.loads(os.environ['TF_CONFIG'])['task']['type']\n"
        "os.write(1, f\"{task} {os.environ.get('PS_ONLY')} {os.environ.get('SET_BY_JOB')}\\n\".encode())\n"
        "time.sleep(0 if task == 'chief' else 60)\n"
    )
    command = [sys.executable, "-m", "platform_cli.targets.local_tf_ps", "--workers", "1", "--ps", "2",
               "--ps-env", "PS_ONLY=yes", "--ps-env", "SET_BY_JOB=server default", "--", sys.executable, str(script)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SET_BY_JOB": "job"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = set(result.stdout.splitlines())
    assert {"[ps 0] ps yes job", "[ps 1] ps yes job", "[worker 0] worker None job", "chief None job"} <= lines

    bad = subprocess.run([*command[:3], "--workers", "1", "--ps", "1", "--ps-env", "NOVALUE", "--", "true"], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--ps-env takes NAME=VALUE" in bad.stderr


def test_tfjob_has_one_parameter_server_per_shard_sized_for_it(project: Path) -> None:
    objects = render_cluster_job(load(project, f"shards: 4, {TABLES}"), load_stack("team-feed"), "big-abcde").documents
    validate_objects(objects)  # the vendored TFJob CRD schema, as for every rendered job
    replicas = objects[-1]["spec"]["tfReplicaSpecs"]
    assert replicas["PS"]["replicas"] == 4
    ps = replicas["PS"]["template"]["spec"]["containers"][0]
    chief = replicas["Chief"]["template"]["spec"]["containers"][0]
    # resources.memory for the process, plus a quarter of tables + Adam's two slots, with headroom.
    shard = 10**7 * 9 * 4 * 3 / 4
    assert float(parse_quantity(ps["resources"]["requests"]["memory"])) == pytest.approx(2**30 + shard * SHARD_HEADROOM, abs=2**20)
    assert ps["resources"]["limits"]["memory"] == ps["resources"]["requests"]["memory"]
    assert chief["resources"]["requests"]["memory"] == "1Gi"  # the others are not resized
    env = {e["name"]: e["value"] for e in ps["env"]}
    assert env["PLINTH_PS_SHARDS"] == "4" and env["PLINTH_EMBEDDING_ROWS"] == "10000000"

    # Twice the shards: half the shard per server, so less memory each.
    eight = render_cluster_job(load(project, f"shards: 8, {TABLES}"), load_stack("team-feed"), "big-abcde").documents[-1]
    ps8 = eight["spec"]["tfReplicaSpecs"]["PS"]
    assert ps8["replicas"] == 8
    assert float(parse_quantity(ps8["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"])) == pytest.approx(2**30 + shard / 2 * SHARD_HEADROOM, abs=2**20)


def test_without_optimizer_slots_a_server_is_sized_for_creating_its_tables(project: Path) -> None:
    tfjob = render_cluster_job(load(project, f"shards: 4, optimizerSlots: 0, {TABLES}"), load_stack("team-feed"), "big-abcde").documents[-1]
    ps = tfjob["spec"]["tfReplicaSpecs"]["PS"]["template"]["spec"]["containers"][0]
    # A quarter of the tables, created piece by piece: more than that quarter with headroom.
    table_shard = 10**7 * 9 * 4 / 4
    assert CREATION_PEAK > SHARD_HEADROOM
    assert float(parse_quantity(ps["resources"]["requests"]["memory"])) == pytest.approx(2**30 + table_shard * CREATION_PEAK, abs=2**20)


def test_the_sized_servers_count_against_the_team_quota(project: Path) -> None:
    # 10^10 rows x 9 with Adam: 1.08 TB over 16 servers (115 GB each with headroom), over the 1Ti of team-feed.
    with pytest.raises(PlinthError, match=r"the job requests .* memory in total \(1 chief \+ 2 workers \+ 16 pss\), over the 1Ti of team feed's quota"):
        render_cluster_job(load(project, "shards: 16, embeddings: {rows: 10000000000, dims: 9}"), load_stack("team-feed"), "big-abcde")


def test_the_large_example_renders_four_servers_of_a_quarter_each(project: Path) -> None:
    job = load_job(REPO / "examples" / "ctr" / "train-ps-large.job.yaml")
    tfjob = render_cluster_job(job, load_stack("team-feed"), "ctr-train-ps-large-abcde").documents[-1]
    ps = tfjob["spec"]["tfReplicaSpecs"]["PS"]
    assert ps["replicas"] == 4
    # 10 004 999 rows x 9 x 4 bytes x (1 + Adagrad's 1 slot) / 4 servers, with headroom, on top of 1Gi.
    memory = float(parse_quantity(ps["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"]))
    assert memory == pytest.approx(2**30 + 10004999 * 9 * 4 * 2 / 4 * SHARD_HEADROOM, abs=2**20)
