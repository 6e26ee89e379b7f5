"""Hostile values in every field of every spec kind: each renders as data - the rendered objects
have exactly the structure a plain value gives them - or is refused with one line (a
PlinthError), never a traceback.

- job specs of each kind, every field (and every key of env, labels, conf), rendered for the
  local, Kubernetes and YARN targets;
- flow specs: a job-file step, an inline job and each built-in step, planned (the local run's
  own check) and rendered as an Argo workflow;
- stack files: every plinth: key of the example stacks, loaded, then used to render a job and a
  flow, and for cluster stacks the objects of the Pulumi program (under its mocks);
- and a few through `plinth` itself, as a user would meet them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.errors import PlinthError
from platform_cli.main import app
from tests.conftest import REPO
from tests.unit.test_render_cluster import lab  # noqa: F401 - the project plus the YARN and S3 test stacks

HOSTILE = {
    "long": "x" * 5000,
    "nul": "a\x00b",
    "newlines": "one\ntwo\r\nthree",
    "trailing-newline": "plain\n",  # what a pattern ending in $ lets through re.match
    "quotes": "it's \"quoted\" and `ticked`",
    "template": "{{ 7 * 7 }}{% if true %}jinja{% endif %}{# comment #}",
    "yaml": "key: value\n- item\n--- &anchor *alias !!python/object/apply:os.system ['id']",
    "flow-yaml": "}{ [a, b]: c, # not a comment",
    "traversal": "../../../etc/passwd",
    "unicode": "ünïcødé ключ 微博 عربى \u2028 \u202e",
    "emoji": "🚀🔥👩‍💻",
    "shell": "; rm -rf / & `id` | $(id)",
}
# The Argo and Pulumi renderers are the slow ones (tenths of a second a render): they get the
# values that could change a structure (line breaks, quotes, YAML and template syntax, a key too
# long for YAML); the job renderers and flow planning get every value.
HEAVY = ("newlines", "quotes", "template", "yaml", "flow-yaml", "long")
# Stack values reach a flow and the Pulumi program through the same quoting a job's do: those
# two get the values most likely to break a structure.
STACK_HEAVY = ("yaml", "template", "long")
# A plain value of the same field: what a hostile value's render is compared with.
PLAIN = "plainvalue"
MARK = "<VALUE>"


def refused_or(call: Callable[[], object]) -> object | None:
    """call()'s result, or None when it refuses with a one-line PlinthError; anything else fails."""
    try:
        return call()
    except PlinthError as error:
        assert "\n" not in str(error) and "\r" not in str(error), repr(str(error))
        return None


def fields(document: object, path: tuple = ()) -> Iterator[tuple[tuple, bool]]:
    """(path, is_key) of every scalar in `document` and of every mapping key."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*path, key), True
            yield from fields(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from fields(value, (*path, index))
    elif document is not None and not isinstance(document, bool):
        yield path, False


def replaced(document: object, path: tuple, is_key: bool, value: str) -> object:
    if len(path) == 1:
        if is_key:
            return {value if key == path[0] else key: item for key, item in document.items()}
        document = copy.copy(document)
        document[path[0]] = value
        return document
    document = copy.copy(document)
    document[path[0]] = replaced(document[path[0]], path[1:], is_key, value)
    return document


def masked(rendered: object, forms: list[str]) -> object:
    """`rendered` with every appearance of the value (in each form it may take) marked."""
    if isinstance(rendered, dict):
        # An Argo resource template carries its object as YAML text: compare the object.
        return {masked(k, forms): masked(yaml.safe_load(v) if k == "manifest" else v, forms) for k, v in rendered.items()}
    if isinstance(rendered, (list, tuple)):
        return [masked(v, forms) for v in rendered]
    if isinstance(rendered, str):
        for form in sorted(forms, key=len, reverse=True):
            rendered = rendered.replace(form, MARK)
    return rendered


def assert_same_structure(hostile: object, plain: object, hostile_forms: list[str], plain_forms: list[str], where: str) -> None:
    assert plain is not None, f"{where}: rendered a hostile value but refused a plain one"
    assert masked(hostile, hostile_forms) == masked(plain, plain_forms), where


def ids(path: tuple, is_key: bool) -> str:
    return ".".join(map(str, path)) + (" (key)" if is_key else "")


def value_forms(value: str, directory: Path) -> list[str]:
    """The value as given, escaped in XML (Hadoop's *-site.xml), and as a path next to a spec
    file (scripts are shown resolved)."""
    forms = [value, xml_escape(value)]
    try:
        forms.append(str((directory / value).resolve()))
    except (OSError, ValueError):
        pass
    return forms


def write_yaml(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


# -- job specs ------------------------------------------------------------------------------

COMMON = {
    "args": ["--features", "${storage}/ctr/features", "--export-dir", "${output_dir}/model"],
    "env": {"MODE": "fast"},
    "resources": {"cpu": 1, "memory": "2Gi", "gpu": 0},
    "labels": {"pipeline": "ctr"},
    "retries": 1,
    "files": ["lib.py"],
}
JOBS = {
    "spark": {"kind": "spark", "name": "h-spark", "script": "main.py", "workers": 2, **COMMON, "conf": {"spark.app.note": "x"}},
    "horovod": {"kind": "horovod", "name": "h-hvd", "script": "main.py", "workers": 2, **COMMON, "pool": "a100", "priorityClass": "plinth-training"},
    "tf-ps": {"kind": "tf-ps", "name": "h-tfps", "script": "main.py", "workers": 2, "parameterServers": 1, **COMMON},
    "python": {"kind": "python", "name": "h-py", "script": "main.py", **COMMON},
}
JOB_FIELDS = [(kind, path, is_key) for kind, document in JOBS.items() for path, is_key in fields(document)]
# Where each kind renders: the local platform, Kubernetes, and spark-submit on YARN.
JOB_STACKS = {"spark": ["local", "team-lab", "team-lab-yarn"], "horovod": ["local", "team-feed"], "tf-ps": ["local", "team-feed"], "python": ["local", "team-feed"]}


def job_dir(project: Path, value: str) -> Path:
    """A directory holding the job's script and files, and a file named `value` too if the
    filesystem takes the name, so a hostile script or file name can be found and rendered."""
    directory = project / "jobs"
    directory.mkdir(exist_ok=True)
    for name in ("main.py", "lib.py", PLAIN):
        (directory / name).write_text("print('hi')\n")
    if "/" not in value:
        try:
            (directory / value).write_text("print('hi')\n")
        except (OSError, ValueError):  # too long, or a NUL: no such file can exist
            pass
    return directory


def rendered_job(job_file: Path, stack_name: str) -> list | None:
    from platform_cli.render.job import render_job
    from platform_cli.spec.job import load_job
    from platform_cli.spec.stack import load_stack

    job = refused_or(lambda: load_job(job_file))
    if job is None:
        return None
    rendered = refused_or(lambda: render_job(job, load_stack(stack_name), job_id=f"{job.spec.name}-abcde"))
    return None if rendered is None else rendered.documents


@pytest.mark.parametrize(("kind", "path", "is_key"), JOB_FIELDS, ids=[f"{k}:{ids(p, key)}" for k, p, key in JOB_FIELDS])
def test_a_hostile_value_in_any_job_field_renders_as_data_or_is_refused(lab: Path, kind: str, path: tuple, is_key: bool) -> None:
    directory = job_dir(lab, PLAIN)
    plain_file = write_yaml(directory / "plain.job.yaml", replaced(JOBS[kind], path, is_key, PLAIN))
    plain = {stack: rendered_job(plain_file, stack) for stack in JOB_STACKS[kind]}
    for name, value in HOSTILE.items():
        directory = job_dir(lab, value)
        job_file = write_yaml(directory / "hostile.job.yaml", replaced(JOBS[kind], path, is_key, value))
        for stack in JOB_STACKS[kind]:
            hostile = rendered_job(job_file, stack)
            if hostile is not None:
                assert_same_structure(hostile, plain[stack], value_forms(value, directory), value_forms(PLAIN, directory), f"{name} on {stack}")


# -- flow specs -----------------------------------------------------------------------------

FLOW = {
    "kind": "flow",
    "name": "hostile",
    "description": "a nightly run",
    "schedule": "0 3 * * *",
    "params": {"rows": "4000"},
    "nodes": {
        "data": {"steps": {"generate": {"job": "gen.job.yaml", "args": ["--rows", "${params.rows}", "--out", "${storage}/raw"], "env": {"SEED": "7"}, "retries": 1, "timeout": "30m"}}},
        "train": {
            "after": ["data"],
            "steps": {"train": {"job": {"kind": "python", "name": "h-train", "script": "main.py", "args": ["--in", "${storage}/raw"], "env": {"EPOCHS": "2"}}, "outputs": ["auc"], "timeout": "1h"}},
        },
        "release": {
            "after": ["train"],
            "steps": {
                "register": {"register": {"model": "ctr", "job": "${nodes.train.steps.train.outputs.job_id}"}},
                "evaluate": {"after": ["register"], "evaluate": {"model": "ctr", "version": "${steps.register.outputs.version}", "data": "${storage}/holdout", "segments": ["device"]}},
                "promote": {"after": ["evaluate"], "when": "${steps.evaluate.outputs.better} == true", "promote": {"model": "ctr", "version": "${steps.register.outputs.version}", "canary": 10}},
            },
        },
    },
}
FLOW_FIELDS = list(fields(FLOW))


def flow_dir(project: Path, value: str) -> Path:
    directory = job_dir(project, value)
    write_yaml(directory / "gen.job.yaml", {"kind": "python", "name": "h-gen", "script": "main.py"})
    return directory


def rendered_flow(flow_file: Path, heavy: bool = True) -> dict | None:
    """The flow's plan (what a local run checks first) and, heavy, its Argo workflow."""
    from platform_cli.flow.plan import plan_flow
    from platform_cli.render.argo import render_flow
    from platform_cli.spec.flow import load_flow
    from platform_cli.spec.stack import load_stack

    flow = refused_or(lambda: load_flow(flow_file))
    plan = flow and refused_or(lambda: plan_flow(flow))
    if plan is None:
        return None
    rendered = {"order": plan.order, "needs": {key: sorted(needs) for key, needs in plan.needs.items()}}
    if heavy:
        rendered["workflow"] = refused_or(lambda: render_flow(plan, load_stack("team-feed")))
    return None if rendered.get("workflow", True) is None else rendered


@pytest.mark.parametrize(("path", "is_key"), FLOW_FIELDS, ids=[ids(p, key) for p, key in FLOW_FIELDS])
def test_a_hostile_value_in_any_flow_field_renders_as_data_or_is_refused(project: Path, path: tuple, is_key: bool) -> None:
    directory = flow_dir(project, PLAIN)
    plain_file = write_yaml(directory / "plain.flow.yaml", replaced(FLOW, path, is_key, PLAIN))
    plain = {heavy: rendered_flow(plain_file, heavy) for heavy in (False, True)}
    for name, value in HOSTILE.items():
        directory = flow_dir(project, value)
        hostile = rendered_flow(write_yaml(directory / "hostile.flow.yaml", replaced(FLOW, path, is_key, value)), name in HEAVY)
        if hostile is not None:
            assert_same_structure(hostile, plain[name in HEAVY], value_forms(value, directory), value_forms(PLAIN, directory), name)


# -- stack files ----------------------------------------------------------------------------

def stack_fields() -> list[tuple[str, tuple, bool]]:
    """Every plinth: key of the example stacks (and the YARN and S3 test stacks), each distinct
    key path once (gpuPools[0] stands for every pool), from the first file that has it."""
    files = [REPO / "stacks" / f"Pulumi.{name}.yaml" for name in ("local", "platform-prod", "team-feed", "team-antispam")]
    files += [REPO / "tests" / "fixtures" / "stacks" / f"Pulumi.{name}.yaml" for name in ("platform-lab", "team-lab", "team-lab-yarn")]
    seen, found = set(), []
    for file in files:
        for path, is_key in fields(yaml.safe_load(file.read_text())["config"], ("config",)):
            shape = (tuple("[]" if isinstance(part, int) else part for part in path), is_key)
            if path[1].startswith("plinth:") and len(path) > (2 if is_key else 1) and shape not in seen:
                seen.add(shape)
                found.append((file.name, path, is_key))
    return found


STACK_FIELDS = stack_fields()
def stack_uses(project: Path, name: str, heavy: bool) -> dict | None:
    """What the stack renders: a job on a stack that runs them, then (heavy) a flow on a team
    stack and the Pulumi program's objects on a cluster stack; None if any of it is refused."""
    from platform_cli.spec.stack import load_stack

    stack = refused_or(lambda: load_stack(name))
    if stack is None:
        return None
    uses: dict = {}
    if stack.role != "platform":
        uses["job"] = rendered_job(write_yaml(flow_dir(project, PLAIN) / "uses.job.yaml", JOBS["python"]), name)
    if heavy and stack.role == "team":
        uses["flow"] = rendered_flow(write_yaml(project / "jobs" / "uses.flow.yaml", FLOW))
    if heavy and stack.role != "local":
        from platform_cli.render.infra import render_stack, validate_rendering

        def pulumi_objects() -> dict:
            rendering = render_stack(name)
            validate_rendering(rendering)
            return {"objects": rendering.objects(), "releases": rendering.releases()}

        uses["pulumi"] = refused_or(pulumi_objects)
    return None if any(use is None for use in uses.values()) else uses


@pytest.mark.parametrize(("file", "path", "is_key"), STACK_FIELDS, ids=[f"{f}:{ids(p[1:], key)}" for f, p, key in STACK_FIELDS])
def test_a_hostile_value_in_any_stack_key_renders_as_data_or_is_refused(lab: Path, file: str, path: tuple, is_key: bool) -> None:
    name = file.removeprefix("Pulumi.").removesuffix(".yaml")
    target = lab / "stacks" / file
    document = yaml.safe_load(target.read_text())
    write_yaml(target, replaced(document, path, is_key, PLAIN))
    plain = {heavy: stack_uses(lab, name, heavy) for heavy in (False, True)}
    for value_name, value in HOSTILE.items():
        write_yaml(target, replaced(document, path, is_key, value))
        heavy = value_name in STACK_HEAVY
        hostile = stack_uses(lab, name, heavy)
        if hostile is not None:
            assert_same_structure(hostile, plain[heavy], value_forms(value, lab), value_forms(PLAIN, lab), value_name)


def test_a_nul_is_refused_where_it_is_written_not_where_it_breaks(project: Path) -> None:
    """No process argument, environment value or file name can hold a NUL (a submit would die
    in exec): every spec kind refuses one at load, naming the key."""
    from platform_cli.spec.flow import load_flow
    from platform_cli.spec.job import load_job
    from platform_cli.spec.stack import load_stack

    directory = flow_dir(project, PLAIN)
    job = write_yaml(directory / "nul.job.yaml", replaced(JOBS["python"], ("env", "MODE"), False, "a\x00b"))
    flow = write_yaml(directory / "nul.flow.yaml", replaced(FLOW, ("nodes", "train", "steps", "train", "job", "args", 1), False, "a\x00b"))
    write_yaml(project / "stacks" / "Pulumi.nul.yaml", {"config": {"plinth:local": {"home": "a\x00b"}}})
    for load, expected in [
        (lambda: load_job(job), f"{job}: env.MODE: holds a NUL character"),
        (lambda: load_flow(flow), f"{flow}: nodes.train.steps.train.job.args[1]: holds a NUL character"),
        (lambda: load_stack("nul"), "stacks/Pulumi.nul.yaml: plinth:local.home: holds a NUL character"),
    ]:
        with pytest.raises(PlinthError) as caught:
            load()
        assert caught.value.message == expected


# -- through the CLI ------------------------------------------------------------------------


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    return result.output


def test_a_script_name_too_long_for_the_filesystem_is_one_line(project: Path) -> None:
    job_file = write_yaml(project / "long.job.yaml", {"kind": "python", "name": "long", "script": "a" * 5000 + ".py"})
    for command in (["job", "render", "-f", str(job_file)], ["job", "submit", "-f", str(job_file)]):
        assert "script: " in one_line_error(command)
    assert not (project / ".plinth" / "local" / "jobs").exists()  # nothing recorded


def test_hostile_flow_and_stack_values_through_the_cli(project: Path) -> None:
    directory = flow_dir(project, PLAIN)
    flow = replaced(FLOW, ("nodes", "data", "steps", "generate", "job"), False, HOSTILE["long"])
    assert "nodes.data.steps.generate.job" in one_line_error(["flow", "graph", "-f", str(write_yaml(directory / "long.flow.yaml", flow))])
    flow = replaced(FLOW, ("nodes", "release", "steps", "promote", "when"), False, HOSTILE["yaml"])
    assert "nodes.release.steps.promote.when" in one_line_error(["flow", "graph", "-f", str(write_yaml(directory / "when.flow.yaml", flow))])
    write_yaml(project / "stacks" / "Pulumi.odd.yaml", {"config": {"plinth:target": HOSTILE["yaml"]}})
    assert "plinth:target: must be one of" in one_line_error(["stack", "show", "odd"])
