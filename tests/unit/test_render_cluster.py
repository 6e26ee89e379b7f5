"""Cluster rendering: golden-pinned, schema-valid, placed by the stacks, refused before sending.

Every rendered object goes through platform_cli.render.validate (strict Kubernetes OpenAPI for
core kinds, the vendored CRD schemas for SparkApplication, MPIJob and TFJob) inside
render_cluster_job itself, so every test here that renders also proves schema validity.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from platform_cli.errors import PlinthError
from platform_cli.kinds import job_kind
from platform_cli.render.cluster import (
    MAX_CODE_BYTES,
    STORAGE_SECRET,
    parse_quantity,
    render_cluster_job,
)
from platform_cli.render.engine import quote
from platform_cli.render.job import render_job
from platform_cli.render.validate import SchemaError, validate_objects
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from tests.conftest import REPO, assert_matches_golden, write_job
from tests.unit.test_render import HOSTILE

GOLDEN = REPO / "tests" / "golden"
EXAMPLE_JOBS = sorted((REPO / "examples").glob("**/*.job.yaml"))
WORKLOAD = {"spark": "SparkApplication", "streaming": "SparkApplication", "horovod": "MPIJob", "tf-ps": "TFJob", "python": "Job"}


@pytest.fixture
def lab(project: Path) -> Path:
    """The project plus test-only stacks: a Kueue + S3 platform with a YARN section."""
    for stack in (REPO / "tests" / "fixtures" / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(stack, project / "stacks" / stack.name)
    return project


def golden_text(text: str, job_file: Path) -> str:
    """The shipped scripts' sources out of the golden file (they are pinned by their own test
    below), so editing an example script does not rewrite every golden file."""
    job = load_job(job_file)
    for name in [job.script_path.name, *job.spec.files]:
        source = (job.base_dir / name).read_text()
        text = text.replace(quote(source), quote(f"<contents of {(job.base_dir / name).relative_to(REPO)}>"))
    return text


@pytest.mark.parametrize("job_file", EXAMPLE_JOBS, ids=lambda p: p.name)
def test_example_jobs_match_their_kubernetes_golden_render(project: Path, job_file: Path) -> None:
    job = load_job(job_file)
    rendered = render_job(job, load_stack("team-feed"), job_id=f"{job.spec.name}-abcde")
    golden = GOLDEN / "kubernetes" / f"{job.spec.name}.yaml"
    text = golden_text(rendered.text, job_file)
    assert_matches_golden(golden, text)


@pytest.mark.parametrize("job_file", EXAMPLE_JOBS, ids=lambda p: p.name)
def test_every_object_is_labelled_valid_and_the_workload_comes_last(project: Path, job_file: Path) -> None:
    job = load_job(job_file)
    objects = render_cluster_job(job, load_stack("team-feed"), f"{job.spec.name}-abcde").documents
    validate_objects(objects)  # again, explicitly: what the workflow helper embeds is valid
    assert [o["kind"] for o in objects] == ["ConfigMap", WORKLOAD[job.spec.kind]]
    for obj in objects:
        assert obj["metadata"]["namespace"] == "feed"
        labels = obj["metadata"]["labels"]
        assert labels["plinth.dev/job-id"] == f"{job.spec.name}-abcde"
        assert labels["plinth.dev/job"] == job.spec.name
        assert labels["plinth.dev/team"] == "feed"
    code = objects[0]["data"]
    for name in [job.script_path.name, *job.spec.files]:
        assert code[name] == (job.base_dir / name).read_text()  # shipped byte for byte


def test_volcano_stack_gang_schedules_in_the_team_queue(project: Path) -> None:
    job = load_job(REPO / "examples" / "ctr" / "train.job.yaml")
    mpijob = render_cluster_job(job, load_stack("team-feed"), "ctr-train-abcde").documents[-1]
    assert mpijob["spec"]["runPolicy"]["schedulingPolicy"] == {"minAvailable": 3, "queue": "feed", "priorityClass": "plinth-training"}
    for replica in mpijob["spec"]["mpiReplicaSpecs"].values():
        pod = replica["template"]["spec"]
        assert pod["schedulerName"] == "volcano"
        assert pod["priorityClassName"] == "plinth-training"
    launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    # It reads ${samples.ctr@latest}: horovodrun runs under the sample launcher, which pins the version for every rank.
    assert launcher["command"][:10] == ["python", "/opt/plinth/job/plinth_launch.py", "--exec", "horovodrun", "-np", "2", "--hostfile", "/etc/mpi/hostfile", "--gloo", "python"]
    assert "hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed/jobs/ctr-train-abcde/checkpoints" in launcher["command"]


def test_kueue_and_s3_stack_label_the_queue_and_reference_the_secret(lab: Path) -> None:
    job = load_job(REPO / "examples" / "ctr" / "generate.job.yaml")
    workload = render_cluster_job(job, load_stack("team-lab"), "ctr-generate-abcde").documents[-1]
    assert workload["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "lab"
    assert workload["spec"]["suspend"] is True  # Kueue unsuspends it when the team's queue admits it
    pod = workload["spec"]["template"]["spec"]
    assert "schedulerName" not in pod  # Kueue admits the Job; the default scheduler places it
    assert pod["priorityClassName"] == "plinth-batch"  # the team's default from its stack
    container = pod["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": STORAGE_SECRET}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AWS_ENDPOINT_URL"] == "https://minio.lab.svc:9000"
    assert not any("SECRET" in name or "KEY" in name for name in env)  # keys only by Secret reference
    assert env["PLINTH_STORAGE"] == "s3://plinth/teams/lab"


def test_gpu_jobs_go_to_their_pool_and_only_workers_hold_gpus(lab: Path) -> None:
    text = "kind: horovod\nname: big\nscript: s.py\nworkers: 2\npool: t4\nresources: {cpu: 4, memory: 8Gi, gpu: 2}\n"
    job = load_job(write_job(lab / "jobs", "s", text, script=""))
    mpijob = render_cluster_job(job, load_stack("team-lab"), "big-abcde").documents[-1]
    assert mpijob["spec"]["slotsPerWorker"] == 2
    assert mpijob["spec"]["runPolicy"]["suspend"] is True   # team-lab's queue is Kueue's: it admits the MPIJob
    worker = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert worker["nodeSelector"] == {"plinth.dev/gpu-pool": "t4", "plinth.dev/gpu-type": "nvidia-tesla-t4"}
    assert {"key": "plinth.dev/pool", "operator": "Equal", "value": "t4", "effect": "NoSchedule"} in worker["tolerations"]
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]
    assert "nodeSelector" not in launcher and "nvidia.com/gpu" not in launcher["containers"][0]["resources"]["requests"]
    assert launcher["containers"][0]["command"][:3] == ["horovodrun", "-np", "4"]  # 2 workers x 2 GPUs


def test_tf_ps_job_is_a_tfjob_that_ends_with_its_chief(project: Path) -> None:
    job = load_job(write_job(project / "jobs", "ps", "kind: tf-ps\nname: ps\nscript: ps.py\nworkers: 2\nparameterServers: 1\n", script=""))
    tfjob = render_cluster_job(job, load_stack("team-feed"), "ps-abcde").documents[-1]
    replicas = tfjob["spec"]["tfReplicaSpecs"]
    assert {name: r["replicas"] for name, r in replicas.items()} == {"Chief": 1, "Worker": 2, "PS": 1}
    assert tfjob["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"  # servers stop with the chief
    assert "successPolicy" not in tfjob["spec"]  # default: the chief's success is the job's
    assert all(r["template"]["spec"]["containers"][0]["name"] == "tensorflow" for r in replicas.values())
    assert tfjob["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] == 4


def test_spark_application_runs_the_shipped_script_with_hdfs_config(project: Path) -> None:
    job = load_job(REPO / "examples" / "ctr" / "preprocess.job.yaml")
    app = render_cluster_job(job, load_stack("team-feed"), "ctr-preprocess-abcde").documents[-1]
    # It writes sample table ctr: the driver runs the sample launcher, the script its first argument.
    assert app["spec"]["mainApplicationFile"] == "local:///opt/plinth/job/plinth_launch.py"
    assert app["spec"]["arguments"][:3] == ["/opt/plinth/job/preprocess.py", "--raw", "hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed/ctr/raw"]
    assert app["spec"]["hadoopConfigMap"] == "plinth-hdfs-config"
    assert app["spec"]["batchSchedulerOptions"] == {"queue": "feed", "priorityClassName": "plinth-training"}
    assert app["spec"]["executor"]["instances"] == 2
    assert app["spec"]["driver"]["configMaps"] == [{"name": "ctr-preprocess-abcde-code", "path": "/opt/plinth/job"}]
    assert app["spec"]["sparkConf"]["spark.sql.shuffle.partitions"] == "4"


def _main_container(workload: dict) -> dict:
    """The container of the job's main process (where the launcher commits), by workload kind."""
    spec = workload["spec"]
    if workload["kind"] == "Job":
        return spec["template"]["spec"]["containers"][0]
    if workload["kind"] == "MPIJob":
        return spec["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    return spec["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("kind", ["python", "spark", "horovod", "tf-ps"])
def test_a_job_with_sample_tables_runs_under_the_launcher_told_what_it_reads_and_writes(project: Path, kind: str) -> None:
    text = (f"kind: {kind}\nname: s\nscript: s.py\nargs: [--in, '${{samples.clicks@latest}}', --out, '${{sample_dir}}', --x]\n"
            "output: {samples: ctr, mode: append}\n")
    rendered = render_cluster_job(load_job(write_job(project / "jobs", "s", text, script="")), load_stack("team-feed"), "s-abcde")
    code, workload = rendered.documents[0], rendered.documents[-1]
    storage = "hdfs://hdfs-namenode.plinth-storage.svc:8020/teams/feed"
    output = {"table": "ctr", "location": f"{storage}/samples/ctr", "dir": f"{storage}/samples/ctr/s-abcde", "mode": "append", "partition_by": None}
    inputs = [{"ref": "clicks@latest", "table": "clicks", "version": None, "location": f"{storage}/samples/clicks@latest"}]
    args = ["--in", f"{storage}/samples/clicks@latest", "--out", f"{storage}/samples/ctr/s-abcde", "--x"]

    assert code["data"]["plinth_launch.py"].endswith("from platform_cli.samples.launch import finish, main\n\nfinish(main())\n")
    annotations = workload["metadata"]["annotations"]
    assert json.loads(annotations["plinth.dev/sample-output"]) == output
    assert json.loads(annotations["plinth.dev/sample-inputs"]) == inputs
    if kind == "spark":
        assert workload["spec"]["mainApplicationFile"] == "local:///opt/plinth/job/plinth_launch.py"
        assert workload["spec"]["arguments"] == ["/opt/plinth/job/s.py", *args]
        env = {e["name"]: e["value"] for e in workload["spec"]["driver"]["env"]}
    else:
        container = _main_container(workload)
        launcher = ["python", "/opt/plinth/job/plinth_launch.py"]
        if kind == "horovod":  # around horovodrun on the MPI launcher: it commits once every rank has succeeded
            assert container["command"][:4] == [*launcher, "--exec", "horovodrun"] and container["command"][-6:] == ["/opt/plinth/job/s.py", *args]
        else:
            assert container["command"] == [*launcher, "/opt/plinth/job/s.py", *args]
        env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["PLINTH_SAMPLE_OUTPUT"]) == output and json.loads(env["PLINTH_SAMPLE_INPUTS"]) == inputs


def test_a_job_without_sample_tables_runs_its_script_directly(project: Path) -> None:
    job = load_job(write_job(project / "jobs", "p", "kind: python\nname: p\nscript: p.py\nargs: [--out, '${output_dir}']\n", script=""))
    workload = render_cluster_job(job, load_stack("team-feed"), "p-abcde").documents[-1]
    assert _main_container(workload)["command"][:2] == ["python", "/opt/plinth/job/p.py"]
    assert "annotations" not in workload["metadata"]


def test_a_shipped_file_may_not_take_the_launchers_name(project: Path) -> None:
    (project / "jobs").mkdir()
    (project / "jobs" / "plinth_launch.py").write_text("")
    text = "kind: python\nname: p\nscript: p.py\nfiles: [plinth_launch.py]\noutput: {samples: ctr}\n"
    with pytest.raises(PlinthError, match="files: 'plinth_launch.py' is the name of Plinth's launcher in the job's code; rename that file"):
        render_cluster_job(load_job(write_job(project / "jobs", "p", text, script="")), load_stack("team-feed"), "p-abcde")


@pytest.mark.parametrize(
    ("stack", "spec", "expected"),
    [
        ("team-feed", "kind: horovod\nname: x\nscript: s.py\nworkers: 4\npool: a100\nresources: {gpu: 8}\n",
         "the job requests 32 gpu in total (1 launcher + 4 workers), over the 16 of team feed's quota (plinth:team.quota.gpu in stacks/Pulumi.team-feed.yaml)"),
        ("team-feed", "kind: spark\nname: x\nscript: s.py\nworkers: 300\n",
         "the job requests 301 cpu in total (1 driver + 300 executors), over the 256 of team feed's quota (plinth:team.quota.cpu"),
        ("team-antispam", "kind: tf-ps\nname: x\nscript: s.py\nworkers: 31\nresources: {memory: 8Gi}\n",
         "the job requests 264Gi memory in total (1 chief + 31 workers + 1 ps), over the 256Gi of team antispam's quota"),
        ("team-feed", "kind: horovod\nname: x\nscript: s.py\npool: v100\n", "pool: 'v100' is not a GPU pool of platform stack 'platform-prod'; use one of: a100, t4"),
        ("team-antispam", "kind: horovod\nname: x\nscript: s.py\npool: a100\n", "pool: 'a100' is not open to team 'antispam' (plinth:team.gpuPools: t4)"),
        ("team-feed", "kind: horovod\nname: x\nscript: s.py\nresources: {gpu: 1}\n", "resources.gpu: 1 per worker needs a GPU pool; set pool: to one of: a100, t4"),
        ("team-feed", "kind: horovod\nname: x\nscript: s.py\npool: t4\nresources: {gpu: 8}\n", "resources.gpu: 8 per worker exceeds the 4 GPUs per node of pool 't4'"),
        ("team-feed", "kind: python\nname: x\nscript: s.py\npriorityClass: urgent\n", "priorityClass: 'urgent' is not a priority class of platform stack 'platform-prod'; use one of: plinth-online"),
        ("local", "kind: python\nname: x\nscript: s.py\n", None),  # the local target needs none of this
    ],
)
def test_preflight_refuses_with_the_limit_named(project: Path, stack: str, spec: str, expected: str | None) -> None:
    job = load_job(write_job(project / "jobs", "s", spec, script=""))
    if expected is None:
        render_job(job, load_stack(stack))
        return
    with pytest.raises(PlinthError) as error:
        render_job(job, load_stack(stack))
    message = str(error.value)
    assert message.startswith("jobs/s.job.yaml: ") or message.startswith(f"{project}/jobs/s.job.yaml: "), message
    assert expected in message
    assert "\n" not in message


def test_oversized_scripts_and_long_names_are_refused(project: Path) -> None:
    job = load_job(write_job(project / "jobs", "s", "kind: python\nname: x\nscript: s.py\n", script="#" * (MAX_CODE_BYTES + 1)))
    with pytest.raises(PlinthError, match=r"script: s.py total 900 KiB, over the 900 KiB a ConfigMap can carry"):
        render_job(job, load_stack("team-feed"))
    name = "a" * 52
    job = load_job(write_job(project / "jobs", "s", f"kind: tf-ps\nname: {name}\nscript: s.py\nworkers: 10\n", script=""))
    with pytest.raises(PlinthError, match=r"too long for a tf-ps job on a cluster .*; use at most 48 characters"):
        render_job(job, load_stack("team-feed"))


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("kind", ["spark", "horovod", "tf-ps", "python"])
def test_hostile_values_cannot_change_a_cluster_manifest(project: Path, kind: str, value: str) -> None:
    text = f"kind: {kind}\nname: hostile\nscript: s.py\nargs: [{quote(value)}]\nenv: {{EVIL: {quote(value)}}}\n"
    if kind == "spark":
        text += f"conf: {{spark.app.note: {quote(value)}}}\n"
    job = load_job(write_job(project / "jobs", "s", text, script=value.replace("$$", "$")))
    clean = load_job(write_job(project / "clean", "s", f"kind: {kind}\nname: hostile\nscript: s.py\nargs: [plain]\nenv: {{EVIL: plain}}\n"
                               + ("conf: {spark.app.note: plain}\n" if kind == "spark" else ""), script=""))
    stack = load_stack("team-feed")
    objects = render_cluster_job(job, stack, "hostile-abcde").documents
    expected = value.replace("$$", "$")

    def shape(node):  # the manifest's structure: every key path, with values left out
        if isinstance(node, dict):
            return {key: shape(child) for key, child in node.items()}
        if isinstance(node, list):
            return [shape(child) for child in node]
        return type(node).__name__

    assert [shape(o) for o in objects] == [shape(o) for o in render_cluster_job(clean, stack, "hostile-abcde").documents]
    assert objects[0]["data"]["s.py"] == expected
    flat = yaml.safe_dump(objects[-1])
    workload = objects[-1]
    if kind == "spark":
        assert workload["spec"]["arguments"] == [expected]
        assert workload["spec"]["sparkConf"]["spark.app.note"] == value
        env = workload["spec"]["driver"]["env"]
    else:
        replicas = workload["spec"].get("mpiReplicaSpecs") or workload["spec"].get("tfReplicaSpecs") or {"Main": workload["spec"]}
        container = next(iter(replicas.values()))["template"]["spec"]["containers"][0]
        assert container["command"][-1] == expected
        env = container["env"]
    assert {"name": "EVIL", "value": expected} in env
    assert flat  # the object serialises back to YAML whole


@pytest.mark.parametrize("value", ["key: value", "a\nb", "{{ x }}", "x" * 64])
def test_hostile_label_values_are_refused_not_rendered(project: Path, value: str) -> None:
    job = load_job(write_job(project / "jobs", "s", f"kind: python\nname: l\nscript: s.py\nlabels: {{team: {quote(value)}}}\n", script=""))
    with pytest.raises(SchemaError, match="metadata.labels: 'team'"):
        render_cluster_job(job, load_stack("team-feed"), "l-abcde").documents


def test_argo_conditions_per_kind(project: Path) -> None:
    conditions = {}
    tf_ps = write_job(project / "jobs", "ps", "kind: tf-ps\nname: ps\nscript: ps.py\n", script="")
    for job_file in [*EXAMPLE_JOBS, tf_ps]:
        job = load_job(job_file)
        workload = render_cluster_job(job, load_stack("team-feed"), f"{job.spec.name}-abcde").documents[-1]
        conditions[workload["kind"]] = job_kind(job.spec.kind).argo_conditions(workload)
    assert conditions == {
        "Job": ("status.succeeded > 0", "status.failed > 3"),
        "SparkApplication": ("status.applicationState.state == COMPLETED", "status.applicationState.state in (FAILED, SUBMISSION_FAILED)"),
        "MPIJob": ("status.replicaStatuses.Launcher.succeeded > 0", "status.replicaStatuses.Launcher.failed > 0"),
        "TFJob": ("status.replicaStatuses.Chief.succeeded > 0", "status.replicaStatuses.Chief.failed > 0"),
    }
    with pytest.raises(PlinthError, match="'pytorch' is not a job kind"):
        job_kind("pytorch")


@pytest.mark.parametrize(("quantity", "value"), [("500m", "0.5"), ("2Gi", str(2 * 2**30)), ("1Ti", str(2**40)), ("64", "64"), ("1.5G", "1500000000")])
def test_quantities_parse_like_the_api_server(quantity: str, value: str) -> None:
    assert parse_quantity(quantity) == parse_quantity(value)


# -- YARN ----------------------------------------------------------------------------------

SPARK_JOBS = [p for p in EXAMPLE_JOBS if load_job(p).spec.kind == "spark"]


@pytest.mark.parametrize("job_file", SPARK_JOBS, ids=lambda p: p.name)
def test_spark_jobs_match_their_yarn_golden_render(lab: Path, job_file: Path) -> None:
    job = load_job(job_file)
    rendered = render_job(job, load_stack("team-lab-yarn"), job_id=f"{job.spec.name}-abcde")
    golden = GOLDEN / "yarn" / f"{job.spec.name}.yaml"
    text = rendered.text.replace(str(lab), "$PROJECT").replace(str(REPO), "$REPO")
    assert_matches_golden(golden, text)


def test_yarn_spark_job_is_this_exact_spark_submit_command(lab: Path) -> None:
    text = ("kind: spark\nname: prep\nscript: prep.py\nfiles: [lib.py]\nworkers: 3\nresources: {cpu: 1.5, memory: 3Gi}\nretries: 1\n"
            "args: ['${storage}/in', \"it's $$5\"]\nenv: {MODE: fast}\nconf: {spark.sql.shuffle.partitions: '8'}\n")
    path = write_job(lab / "jobs", "prep", text, script="")
    (lab / "jobs" / "lib.py").write_text("")
    launch = render_job(load_job(path), load_stack("team-lab-yarn"), job_id="prep-abcde").documents[0]
    storage = "hdfs://nn.hadoop.lab:8020/teams/lab"
    env = {"PLINTH_STACK": "team-lab-yarn", "PLINTH_JOB_NAME": "prep", "PLINTH_JOB_ID": "prep-abcde", "PLINTH_STORAGE": storage,
           "PLINTH_OUTPUT_DIR": f"{storage}/jobs/prep-abcde/outputs", "PLINTH_CHECKPOINT_DIR": f"{storage}/jobs/prep-abcde/checkpoints", "MODE": "fast"}
    assert launch["spec"]["command"] == [
        "spark-submit", "--master", "yarn", "--deploy-mode", "client", "--name", "prep-abcde", "--queue", "lab",
        "--num-executors", "3", "--executor-cores", "2", "--executor-memory", "3072m", "--driver-memory", "3072m",
        "--py-files", f"{lab}/jobs/lib.py",
        "--conf", "spark.yarn.tags=plinth-job-id=prep-abcde,plinth-job=prep,plinth-team=lab",
        "--conf", "spark.yarn.maxAppAttempts=2",
        "--conf", "spark.log.level=WARN",
        *[arg for key, value in env.items() for arg in ("--conf", f"spark.executorEnv.{key}={value}")],
        "--conf", "spark.sql.shuffle.partitions=8",
        f"{lab}/jobs/prep.py", f"{storage}/in", "it's $5",
    ]
    assert launch["spec"]["env"] == {"HADOOP_CONF_DIR": f"{lab}/.plinth/local/hadoop-conf/platform-lab", "PYSPARK_DRIVER_PYTHON": "python", **env}


def test_yarn_stack_sends_other_kinds_to_kubernetes_and_refuses_gpus_for_spark(lab: Path) -> None:
    train = load_job(REPO / "examples" / "ctr" / "train.job.yaml")
    assert render_job(train, load_stack("team-lab-yarn"), job_id="ctr-train-abcde").documents[-1]["kind"] == "MPIJob"
    job = load_job(write_job(lab / "jobs", "s", "kind: spark\nname: g\nscript: s.py\npool: t4\nresources: {gpu: 1}\n", script=""))
    with pytest.raises(PlinthError, match="GPU pools are Kubernetes node pools; a YARN stack runs CPU Spark jobs"):
        render_job(job, load_stack("team-lab-yarn"))


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_single_spark_submit_arguments(lab: Path, value: str) -> None:
    text = f"kind: spark\nname: h\nscript: s.py\nargs: [{quote(value)}]\nenv: {{EVIL: {quote(value)}}}\nconf: {{spark.app.note: {quote(value)}}}\n"
    job = load_job(write_job(lab / "jobs", "s", text, script=""))
    command = render_job(job, load_stack("team-lab-yarn"), job_id="h-abcde").documents[0]["spec"]["command"]
    expected = value.replace("$$", "$")
    assert command[-1] == expected
    assert command[command.index(f"spark.app.note={value}") - 1] == "--conf"
    assert command[command.index(f"spark.executorEnv.EVIL={expected}") - 1] == "--conf"


def test_spark_on_kueue_puts_its_pods_in_the_team_queue(lab: Path) -> None:
    app = render_cluster_job(load_job(REPO / "examples" / "ctr" / "preprocess.job.yaml"), load_stack("team-lab"), "p-abcde").documents[-1]
    assert "batchScheduler" not in app["spec"]
    for role in ("driver", "executor"):
        assert app["spec"][role]["labels"]["kueue.x-k8s.io/queue-name"] == "lab"
