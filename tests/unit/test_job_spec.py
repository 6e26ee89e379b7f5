"""Job specs: valid files load; every invalid one is refused with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from platform_cli.errors import PlinthError
from platform_cli.kinds.horovod import HorovodJobSpec
from platform_cli.kinds.spark import SparkJobSpec
from platform_cli.spec.job import load_job
from tests.conftest import write_job

VALID = """\
kind: horovod
name: ctr-train
script: train.py
args: [--features, "${storage}/ctr/features"]
workers: 2
resources: {cpu: 1, memory: 2Gi}
"""


def test_a_valid_spec_loads_with_defaults(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path, "train", VALID, script=""))
    assert isinstance(job.spec, HorovodJobSpec)
    assert job.spec.workers == 2
    assert job.spec.resources.gpu == 0
    assert job.script_path == tmp_path / "train.py"


def test_spark_conf_is_typed(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path, "prep", "kind: spark\nname: prep\nscript: prep.py\nconf: {spark.sql.shuffle.partitions: '4'}\n", script=""))
    assert isinstance(job.spec, SparkJobSpec)
    assert job.spec.conf == {"spark.sql.shuffle.partitions": "4"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nscript: t.py\n", "kind: missing"),
        ("kind: mpi\nname: x\nscript: t.py\n", "kind: must be one of 'spark', 'horovod', 'tf-ps', 'python'"),
        ("kind: horovod\nscript: t.py\n", "name: Field required"),
        ("kind: horovod\nname: Ctr_Train\nscript: t.py\n", "name: 'Ctr_Train' must be lowercase letters, digits and '-'"),
        ("kind: horovod\nname: x\nscript: t.py\nworkers: 0\n", "workers: Input should be greater than or equal to 1"),
        ("kind: horovod\nname: x\nscript: t.py\nworkerz: 2\n", "workerz: unknown key (check its spelling)"),
        ("kind: horovod\nname: x\nscript: t.py\nresources: {memory: lots}\n", "resources.memory: String should match pattern"),
        ("kind: horovod\nname: x\nscript: t.py\nenv: {'BAD-NAME': v}\n", "env: 'BAD-NAME' is not an environment variable name"),
        ("kind: spark\nname: x\nscript: t.py\nconf: {shuffle: '4'}\n", "conf: 'shuffle' is not a Spark property"),
        ("kind: python\nname: x\nscript: t.py\nworkers: 2\n", "workers: must be one of 1"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_invalid_specs_name_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write_job(tmp_path, "t", text, script="")
    with pytest.raises(PlinthError) as error:
        load_job(path)
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message
    assert "\n" not in message


def test_missing_script_is_refused(tmp_path: Path) -> None:
    path = write_job(tmp_path, "t", "kind: python\nname: x\nscript: nowhere.py\n")
    with pytest.raises(PlinthError, match="script: 'nowhere.py' not found next to the job file"):
        load_job(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlinthError, match="not found"):
        load_job(tmp_path / "absent.yaml")
