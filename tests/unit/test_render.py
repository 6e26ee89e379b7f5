"""Rendering: deterministic, golden-pinned, and no value can change a manifest's structure."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from platform_cli.errors import PlinthError
from platform_cli.render.engine import quote, render_template
from platform_cli.render.job import render_job
from platform_cli.spec.job import load_job
from platform_cli.spec.stack import load_stack
from tests.conftest import REPO, assert_matches_golden, write_job

GOLDEN = REPO / "tests" / "golden"
EXAMPLE_JOBS = sorted((REPO / "examples").glob("**/*.job.yaml"))


def normalised(text: str, project: Path) -> str:
    """Machine-specific roots out, so the golden file is the same on every checkout."""
    return text.replace(str(project), "$PROJECT").replace(str(REPO), "$REPO")


@pytest.mark.parametrize("job_file", EXAMPLE_JOBS, ids=lambda p: p.name)
def test_example_jobs_match_their_golden_render(project: Path, job_file: Path) -> None:
    job = load_job(job_file)
    rendered = render_job(job, load_stack("local"), job_id=f"{job.spec.name}-abcde")
    golden = GOLDEN / "local" / f"{job.spec.name}.yaml"
    text = normalised(rendered.text, project)
    assert_matches_golden(golden, text)


def test_rendering_is_deterministic(project: Path) -> None:
    job = load_job(REPO / "examples" / "ctr" / "train.job.yaml")
    stack = load_stack("local")
    assert render_job(job, stack, job_id="x-1").text == render_job(job, stack, job_id="x-1").text


def test_horovod_render_is_the_horovodrun_command(project: Path) -> None:
    rendered = render_job(load_job(REPO / "examples" / "ctr" / "train.job.yaml"), load_stack("local"), job_id="ctr-train-abcde")
    spec = rendered.documents[0]["spec"]
    assert spec["command"][:7] == ["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", "python"]
    assert spec["checkpointDir"] == f"{project}/.plinth/local/storage/jobs/ctr-train-abcde/checkpoints"
    assert spec["checkpointDir"] in spec["command"]


HOSTILE = [
    "plain",
    'quote " and \' apostrophe',
    "new\nline: injected\n- item",
    "{{ job.name }} {% if true %}jinja{% endif %}",
    "--- \n...\n",
    "key: value",
    "true",
    "1e3",
    "null",
    "# comment",
    "&anchor *alias !!python/object:os.system",
    "tab\tand \r carriage \x7f del \x85 nel \u2028 ls \u2029 ps",  # a NUL is refused at load (test_hostile_values)
    "emoji 🚀 and CJK 微博",
    "$$ literal dollar",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_data(project: Path, value: str) -> None:
    text = f"kind: python\nname: hostile\nscript: s.py\nargs: {quote(value)}\nenv: {{EVIL: {quote(value)}}}\nlabels: {{team: {quote(value)}}}\n"
    # quote() output is itself the YAML we embed above; the spec must read back the same value.
    job = load_job(write_job(project / "jobs", "s", text.replace("args: ", "args: [", 1).replace("\nenv", "]\nenv", 1), script=""))
    expected = value.replace("$$", "$")
    rendered = render_job(job, load_stack("local"), job_id="hostile-abcde")
    document = rendered.documents[0]
    assert list(document) == ["apiVersion", "kind", "metadata", "spec"]
    assert list(document["spec"]) == ["workdir", "outputDir", "checkpointDir", "command", "env"]
    assert document["spec"]["command"][-1] == expected
    assert document["spec"]["env"]["EVIL"] == expected
    assert document["metadata"]["labels"] == {"team": value}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(st.text(), max_size=3), st.dictionaries(st.text(), st.text(), max_size=3)))
def test_quote_round_trips_any_value_through_yaml(value: object) -> None:
    if isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        with pytest.raises(PlinthError):
            quote(value)
        return
    assert yaml.safe_load(f"key: {quote(value)}\nnext: 1\n") == {"key": value, "next": 1}


def test_undefined_template_variable_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t.yaml.j2").write_text("name: {{ nme | quote }}\n")
    monkeypatch.setenv("PLINTH_TEMPLATES", str(tmp_path))
    with pytest.raises(PlinthError, match="template t.yaml.j2: 'nme' is undefined"):
        render_template("t.yaml.j2", {"name": "x"})


def test_unknown_job_variable_names_the_field(project: Path) -> None:
    job = load_job(write_job(project / "jobs", "s", "kind: python\nname: v\nscript: s.py\nargs: [ok, '${storag}/x']\n", script=""))
    with pytest.raises(PlinthError, match=r"args\[1\]: unknown variable \$\{storag\}; use one of \$\{storage\}"):
        render_job(job, load_stack("local"))


def test_horovod_workers_beyond_the_stack_slots_are_refused(project: Path) -> None:
    job = load_job(write_job(project / "jobs", "s", "kind: horovod\nname: big\nscript: s.py\nworkers: 3\n", script=""))
    with pytest.raises(PlinthError, match="workers: 3 exceeds the 2 Horovod slots of stack 'local'.*plinth:local.horovodSlots"):
        render_job(job, load_stack("local"))


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_spark_conf_values_stay_one_argument(project: Path, value: str) -> None:
    job = load_job(write_job(project / "jobs", "s", f"kind: spark\nname: conf\nscript: s.py\nconf: {{spark.app.note: {quote(value)}}}\n", script=""))
    command = render_job(job, load_stack("local"), job_id="conf-abcde").documents[0]["spec"]["command"]
    assert f"spark.app.note={value}" in command
    assert command[command.index(f"spark.app.note={value}") - 1] == "--conf"


def test_hostile_stack_values_stay_data(project: Path) -> None:
    """Values from the stack file (here the storage root) go through the same quoting."""
    root = 'data/with "quotes"\nand: newline'
    (project / "stacks" / "Pulumi.odd.yaml").write_text(f"config:\n  plinth:storage: {{root: {quote(root)}}}\n")
    job = load_job(write_job(project / "jobs", "s", "kind: python\nname: odd\nscript: s.py\nargs: ['${storage}/x']\n", script=""))
    document = render_job(job, load_stack("odd"), job_id="odd-abcde").documents[0]
    assert document["spec"]["command"][-1] == f"{project}/{root}/x"
    assert document["spec"]["env"]["PLINTH_STORAGE"] == f"{project}/{root}"
