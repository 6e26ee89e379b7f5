"""Flow specs and planning: one typed spec from YAML or XML, and every graph mistake refused
before anything runs, in one line that names it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from platform_cli.errors import PlinthError
from platform_cli.flow.graph import dot_graph, mermaid_graph, text_graph
from platform_cli.flow.plan import blocked_steps, builtin_argv, check_condition, parse_condition, plan_flow, ready_steps, substitute_refs
from platform_cli.main import app
from platform_cli.spec.flow import load_flow
from platform_cli.status import StepStatus
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "ctr"
SCRIPT = "print('hi')\n"


def write_flow(tmp_path: Path, document: dict | str, name: str = "flow.yaml") -> Path:
    (tmp_path / "s.py").write_text(SCRIPT)
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    return path


def job(name: str = "j", *args: str) -> dict:
    return {"kind": "python", "name": name, "script": "s.py", "args": list(args)}


def flow(nodes: dict, params: dict | None = None) -> dict:
    return {"kind": "flow", "name": "demo", **({"params": params} if params else {}), "nodes": nodes}


def plan_error(tmp_path: Path, document: dict, given: dict | None = None) -> str:
    with pytest.raises(PlinthError) as caught:
        plan_flow(load_flow(write_flow(tmp_path, document)), given)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_yaml_and_xml_forms_of_the_example_give_the_same_spec() -> None:
    from_yaml, from_xml = load_flow(EXAMPLE / "flow.yaml"), load_flow(EXAMPLE / "flow.xml")
    assert from_yaml.spec == from_xml.spec
    assert from_yaml.jobs == from_xml.jobs
    # and the spec says what the file says
    assert from_yaml.spec.nodes["release"].steps["promote"].action.canary == 10
    assert from_yaml.spec.nodes["train"].steps["train"].timeout == 1800
    assert from_yaml.jobs["train/train"].spec.args[-2:] == ["--epochs", "${params.epochs}"]


def test_xml_inline_job_matches_yaml_inline_job(tmp_path: Path) -> None:
    xml = """<flow name="demo"><param name="n" value="3"/>
      <node name="a"><step name="one" retries="2" timeout="90s">
        <job kind="python" name="j" script="s.py"><arg>--n</arg><arg>${params.n}</arg><env name="X" value="1"/></job>
        <output>auc</output></step></node></flow>"""
    document = flow({"a": {"steps": {"one": {"job": {**job("j", "--n", "${params.n}"), "env": {"X": "1"}}, "outputs": ["auc"], "retries": 2, "timeout": "90s"}}}}, {"n": 3})
    assert load_flow(write_flow(tmp_path, xml, "f.xml")).spec == load_flow(write_flow(tmp_path, document)).spec


def test_xml_with_a_doctype_is_refused_before_any_entity_is_expanded(tmp_path: Path) -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE flow [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><flow name="x">&b;</flow>'
    with pytest.raises(PlinthError, match="DOCTYPE and ENTITY declarations are not allowed"):
        load_flow(write_flow(tmp_path, bomb, "f.xml"))


def test_xml_unknown_attribute_is_named(tmp_path: Path) -> None:
    with pytest.raises(PlinthError, match=r"<step>: unknown attribute 'retry'"):
        load_flow(write_flow(tmp_path, '<flow name="x"><node name="a"><step name="s" retry="1" job="x.yaml"/></node></flow>', "f.xml"))


def test_node_cycle_is_refused_naming_it(tmp_path: Path) -> None:
    nodes = {"a": {"after": ["c"], "steps": {"s": {"job": job()}}}, "b": {"after": ["a"], "steps": {"s": {"job": job()}}}, "c": {"after": ["b"], "steps": {"s": {"job": job()}}}}
    assert "nodes: cycle a -> c -> b -> a" in plan_error(tmp_path, flow(nodes))


def test_step_cycle_is_refused_naming_it(tmp_path: Path) -> None:
    steps = {"x": {"after": ["y"], "job": job()}, "y": {"after": ["x"], "job": job()}}
    assert "nodes.a.steps: cycle x -> y -> x" in plan_error(tmp_path, flow({"a": {"steps": steps}}))


def test_unknown_node_and_step_in_after_are_named(tmp_path: Path) -> None:
    assert "nodes.b.after: unknown node 'aa'" in plan_error(tmp_path, flow({"a": {"steps": {"s": {"job": job()}}}, "b": {"after": ["aa"], "steps": {"s": {"job": job()}}}}))
    assert "nodes.a.steps.t.after: unknown step 'ss'" in plan_error(tmp_path, flow({"a": {"steps": {"s": {"job": job()}, "t": {"after": ["ss"], "job": job()}}}}))


def test_missing_and_unknown_parameters_are_refused(tmp_path: Path) -> None:
    document = flow({"a": {"steps": {"s": {"job": job("j", "${params.rows}")}}}}, {"rows": None})
    assert "params.rows: missing parameter (it has no default); give it with -p rows=VALUE" in plan_error(tmp_path, document)
    assert "unknown parameter 'rowz' given with -p" in plan_error(tmp_path, document, {"rows": "1", "rowz": "2"})
    assert plan_flow(load_flow(write_flow(tmp_path, document)), {"rows": "5"}).params == {"rows": "5"}
    undeclared = flow({"a": {"steps": {"s": {"job": job("j", "${params.epochs}")}}}})
    assert "nodes.a.steps.s.args[0]: ${params.epochs}: unknown parameter 'epochs'" in plan_error(tmp_path, undeclared)


def test_output_used_before_it_exists_is_refused(tmp_path: Path) -> None:
    # same node, no after: between them
    steps = {"train": {"job": job(), "outputs": ["auc"]}, "use": {"job": job("j", "${steps.train.outputs.auc}")}}
    assert "output used before it exists: step 'use' does not run after 'train'" in plan_error(tmp_path, flow({"a": {"steps": steps}}))
    # across nodes, without the node dependency
    nodes = {"a": {"steps": {"train": {"job": job()}}}, "b": {"steps": {"use": {"job": job("j", "${nodes.a.steps.train.outputs.job_id}")}}}}
    assert "node 'b' does not run after node 'a'" in plan_error(tmp_path, flow(nodes))
    nodes["b"]["after"] = ["a"]
    plan_flow(load_flow(write_flow(tmp_path, flow(nodes))))  # fine once ordered


def test_unknown_step_output_and_reference_are_named(tmp_path: Path) -> None:
    steps = {"train": {"job": job()}, "use": {"after": ["train"], "job": job("j", "${steps.train.outputs.auc}")}}
    message = plan_error(tmp_path, flow({"a": {"steps": steps}}))
    assert "step 'train' has no output 'auc'" in message and "outputs:" in message
    steps["use"]["job"] = job("j", "${steps.trian.outputs.job_id}")
    assert "node 'a' has no step 'trian'" in plan_error(tmp_path, flow({"a": {"steps": steps}}))
    steps["use"]["job"] = job("j", "${nope}")
    assert "${nope}: unknown reference" in plan_error(tmp_path, flow({"a": {"steps": steps}}))


def test_a_bad_condition_is_refused_at_plan_time(tmp_path: Path) -> None:
    steps = {"s": {"job": job()}, "t": {"after": ["s"], "when": "${steps.s.outputs.job_id}", "job": job()}}
    assert "nodes.a.steps.t.when" in plan_error(tmp_path, flow({"a": {"steps": steps}}))


def test_a_step_needs_exactly_one_kind(tmp_path: Path) -> None:
    with pytest.raises(PlinthError, match="exactly one of job, register, evaluate, promote"):
        load_flow(write_flow(tmp_path, flow({"a": {"steps": {"s": {"job": job(), "register": {"model": "m", "job": "x"}}}}})))


def test_conditions_compare_numbers_as_numbers_and_never_eval() -> None:
    assert check_condition(*_sides("0.81 > 0.8"))
    assert not check_condition(*_sides("10 < 9"))  # as text "10" < "9" would be true
    assert check_condition(*_sides("true == true"))
    assert check_condition(*_sides("'a b' != 'a c'"))
    with pytest.raises(PlinthError, match="cannot order"):
        check_condition(*_sides("abc < 3"))
    with pytest.raises(PlinthError, match="not one comparison"):
        parse_condition("__import__('os').system('true')")
    with pytest.raises(PlinthError, match="not one comparison"):
        parse_condition("1 < 2 < 3")


def _sides(text: str) -> tuple[str, str, str]:
    return parse_condition(text)


def test_substitution_is_plain_text_and_keeps_job_variables_for_the_job_renderer() -> None:
    outputs = {"a/train": {"auc": "0.8", "odd": "x$y"}}
    assert substitute_refs("${steps.train.outputs.auc}/${output_dir}", "a/use", {}, outputs) == "0.8/${output_dir}"
    # a value with a $ reaches the job renderer escaped, so it stays literal there
    assert substitute_refs("${steps.train.outputs.odd}", "a/use", {}, outputs) == "x$$y"
    assert substitute_refs("${storage}/d $$ ${params.p}", "a/use", {"p": "{{ x }}"}, outputs, {"storage": "/s"}) == "/s/d $ {{ x }}"


def test_scheduling_follows_both_layers(tmp_path: Path) -> None:
    nodes = {
        "a": {"steps": {"x": {"job": job()}, "y": {"after": ["x"], "job": job()}}},
        "b": {"steps": {"z": {"job": job()}}},
        "c": {"after": ["a", "b"], "steps": {"w": {"job": job()}}},
    }
    plan = plan_flow(load_flow(write_flow(tmp_path, flow(nodes))))
    states = dict.fromkeys(plan.order, "Pending")
    assert ready_steps(plan, states) == ["a/x", "b/z"]
    states.update({"a/x": "Succeeded", "b/z": "Failed"})
    assert ready_steps(plan, states) == ["a/y"]  # the independent branch goes on
    assert blocked_steps(plan, states) == ["c/w"]  # what depends on the failure never starts


def test_a_failed_first_node_omits_every_step_downstream_of_it() -> None:
    """The example flow: when `data/generate` fails, the steps that wait for it directly
    (features) and through others (train, evaluate, promote) are all blocked in one pass, so
    none is left Pending."""
    plan = plan_flow(load_flow(EXAMPLE / "flow.yaml"))
    states = dict.fromkeys(plan.order, StepStatus.PENDING)
    states["data/generate"] = StepStatus.FAILED
    assert ready_steps(plan, states) == []
    assert blocked_steps(plan, states) == plan.order[1:]
    # an Omitted step blocks what waits for it, as a Failed one does
    states.update({"data/generate": StepStatus.SUCCEEDED, "features/preprocess": StepStatus.OMITTED})
    assert blocked_steps(plan, states) == plan.order[2:]


def test_graph_shows_both_layers(tmp_path: Path) -> None:
    plan = plan_flow(load_flow(EXAMPLE / "flow.yaml"))
    text = text_graph(plan)
    assert text.startswith("flow ctr: 4 nodes, 6 steps, schedule '0 3 * * *'")
    assert "└── release  (after train)" in text and "promote ← evaluate" in text
    assert 'subgraph "cluster_release"' in dot_graph(plan)
    assert "train --> release" in mermaid_graph(plan)


def test_builtin_steps_run_the_cli_they_stand_for() -> None:
    # every one prints JSON, whose fields are the step's outputs
    assert builtin_argv("promote", {"model": "ctr", "version": "3", "canary": 10}, "local") == ["model", "promote", "ctr", "3", "--canary", "10", "--stack", "local", "-o", "json"]
    assert builtin_argv("register", {"model": "ctr", "job": "ctr-train-b4k9z"}, "s") == ["model", "register", "ctr", "--job", "ctr-train-b4k9z", "--stack", "s", "-o", "json"]
    assert builtin_argv("evaluate", {"model": "ctr", "version": "3", "data": "/d", "segments": ["device"]}, "s")[-6:] == ["--segment", "device", "--stack", "s", "-o", "json"]


def test_cli_refuses_a_cycle_in_one_line(tmp_path: Path) -> None:
    nodes = {"a": {"after": ["b"], "steps": {"s": {"job": job()}}}, "b": {"after": ["a"], "steps": {"s": {"job": job()}}}}
    result = CliRunner().invoke(app, ["flow", "graph", "-f", str(write_flow(tmp_path, flow(nodes)))])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "cycle a -> b -> a" in result.output


def test_parameters_are_typed_and_a_value_of_the_wrong_type_is_refused_naming_it(tmp_path: Path) -> None:
    params = {"rows": 40000, "ratio": 0.5, "fast": True, "tag": "nightly", "epochs": {"type": "integer", "default": None, "description": "passes"}}
    document = flow({"a": {"steps": {"s": {"job": job("j", "${params.rows}", "${params.ratio}", "${params.fast}", "${params.tag}", "${params.epochs}")}}}}, params)
    spec = load_flow(write_flow(tmp_path, document)).spec
    assert {name: (p.type, p.default) for name, p in spec.params.items()} == {
        "rows": ("integer", "40000"), "ratio": ("number", "0.5"), "fast": ("boolean", "true"), "tag": ("string", "nightly"), "epochs": ("integer", None)}
    good = {"epochs": "3", "ratio": "-1e-3", "fast": "false", "tag": "anything at all"}
    assert plan_flow(load_flow(write_flow(tmp_path, document)), good).params == {"rows": "40000", "ratio": "-1e-3", "fast": "false", "tag": "anything at all", "epochs": "3"}
    for name, value, problem in (("rows", "abc", "is not an integer"), ("rows", "5\n", "is not an integer"), ("epochs", "2.5", "is not an integer"), ("ratio", "half", "is not a number"), ("fast", "yes", "is not a boolean (true or false)")):
        message = plan_error(tmp_path, document, {"epochs": "3", name: value})
        assert f"params.{name}: {value!r} {problem}; parameter {name!r} is typed" in message


def test_a_default_of_the_wrong_type_is_refused_when_the_flow_is_read(tmp_path: Path) -> None:
    document = flow({"a": {"steps": {"s": {"job": job()}}}}, {"ratio": {"type": "number", "default": "half"}})
    with pytest.raises(PlinthError, match=r"params.ratio: .*default 'half' is not a number \(type: number\)"):
        load_flow(write_flow(tmp_path, document))


def test_xml_parameters_take_a_type_or_read_their_value_as_yaml_would(tmp_path: Path) -> None:
    xml = """<flow name="demo"><param name="rows" value="40000"/><param name="tag" value="nightly"/>
      <param name="ratio" value="1" type="number"/><param name="epochs" type="integer"/>
      <node name="a"><step name="s"><job kind="python" name="j" script="s.py"/></step></node></flow>"""
    params = load_flow(write_flow(tmp_path, xml, "flow.xml")).spec.params
    assert {name: (p.type, p.default) for name, p in params.items()} == {"rows": ("integer", "40000"), "tag": ("string", "nightly"), "ratio": ("number", "1"), "epochs": ("integer", None)}
