"""Planning a flow: pure functions, no side effects.

- `plan_flow` checks the whole graph before anything runs (cycles, unknown nodes and steps,
  missing parameters, outputs used before they exist) and flattens the two layers into one
  step graph: a step waits for the steps of its node it is `after`, and for every step of the
  nodes its node is `after`.
- `ready_steps` is the scheduler's question: which pending steps may start now.
- `substitute_refs` fills `${params.X}` and `${...outputs.K}` references (plain substitution).
- `check_condition` decides a step's `when:` (one comparison, never eval()).

Every error is one PlinthError naming the file and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from platform_cli import samples as sample_refs
from platform_cli.errors import PlinthError
from platform_cli.spec.flow import FlowSpec, LoadedFlow, Step, param_type_problem
from platform_cli.spec.job import JOB_VARIABLES
from platform_cli.status import StepStatus

# `$$` is a literal dollar (as in job specs); `${...}` a reference.
_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_STEP_REF = re.compile(r"^steps\.([^.]+)\.outputs\.([^.]+)$")
_NODE_REF = re.compile(r"^nodes\.([^.]+)\.steps\.([^.]+)\.outputs\.([^.]+)$")
_PARAM_REF = re.compile(r"^params\.([^.]+)$")

# What each kind of step publishes, whatever it ran; job steps add their declared `outputs:`
# (keys of ${output_dir}/metrics.json).
STEP_OUTPUTS = {
    "job": ("job_id", "output_dir", "checkpoint_dir", "model_dir"),
    "register": ("model", "version"),
    "evaluate": ("version", "auc", "logloss", "production_version", "production_auc", "better", "report"),
    "promote": ("model", "version"),
}

# Variables a built-in step may use besides flow references.
BUILTIN_VARIABLES = ("storage",)


def step_key(node: str, step: str) -> str:
    return f"{node}/{step}"


def step_outputs(step: Step) -> tuple[str, ...]:
    return STEP_OUTPUTS[step.kind] + (tuple(step.outputs) if step.kind == "job" else ())


@dataclass(frozen=True)
class Ref:
    """One `${...}` reference: to a parameter, a step output, or a job/stack variable."""

    text: str
    param: str | None = None
    node: str | None = None
    step: str | None = None
    output: str | None = None
    variable: str | None = None


@dataclass(frozen=True)
class Plan:
    flow: LoadedFlow
    params: dict[str, str]
    node_order: list[str]
    order: list[str]  # step keys, topologically sorted (node order, then step order)
    needs: dict[str, frozenset[str]]  # step key -> step keys it waits for (flattened)
    refs: dict[str, tuple[Ref, ...]] = field(default_factory=dict)

    @property
    def spec(self) -> FlowSpec:
        return self.flow.spec

    def step(self, key: str) -> Step:
        node, step = key.split("/")
        return self.spec.nodes[node].steps[step]


def plan_flow(flow: LoadedFlow, given: dict[str, str] | None = None) -> Plan:
    """Check the flow for `given` parameters and return its flattened step graph."""
    spec, where = flow.spec, flow.shown_file
    try:
        params = _params(spec, given or {})
        node_order = _toposort({n: node.after for n, node in spec.nodes.items()}, "nodes", "node")
        node_ancestors = _ancestors({n: node.after for n, node in spec.nodes.items()}, node_order)
        order: list[str] = []
        needs: dict[str, frozenset[str]] = {}
        refs: dict[str, tuple[Ref, ...]] = {}
        for node_name in node_order:
            node = spec.nodes[node_name]
            inner = {s: step.after for s, step in node.steps.items()}
            step_order = _toposort(inner, f"nodes.{node_name}.steps", f"step of node {node_name!r}:")
            step_ancestors = _ancestors(inner, step_order)
            upstream = frozenset(step_key(u, s) for u in node.after for s in spec.nodes[u].steps)
            for step_name in step_order:
                key = step_key(node_name, step_name)
                order.append(key)
                needs[key] = upstream | {step_key(node_name, a) for a in node.steps[step_name].after}
                refs[key] = tuple(_check_refs(flow, node_name, step_name, step_ancestors[step_name], node_ancestors[node_name]))
    except PlinthError as exc:
        raise PlinthError(f"{where}: {exc.message}", exc.fix) from None
    return Plan(flow=flow, params=params, node_order=node_order, order=order, needs=needs, refs=refs)


def _params(spec: FlowSpec, given: dict[str, str]) -> dict[str, str]:
    for name in given:
        if name not in spec.params:
            known = ", ".join(spec.params) or "none"
            raise PlinthError(f"params: unknown parameter {name!r} given with -p", f"parameters of flow {spec.name}: {known}")
    values = {name: given.get(name, param.default) for name, param in spec.params.items()}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise PlinthError(f"params.{missing[0]}: missing parameter (it has no default)", f"give it with -p {missing[0]}=VALUE")
    for name, value in values.items():
        param = spec.params[name]
        if problem := param_type_problem(param.type, value):
            example = param.default or {"integer": "3", "number": "0.5", "boolean": "true"}[param.type]
            raise PlinthError(f"params.{name}: {value!r} {problem}", f"parameter {name!r} is typed {param.type}, e.g. -p {name}={example}")
    return values


def _toposort(graph: dict[str, list[str]], field_path: str, what: str) -> list[str]:
    """Kahn's algorithm, keeping declaration order among independent entries (stable output)."""
    for name, after in graph.items():
        for dependency in after:
            if dependency not in graph:
                raise PlinthError(f"{field_path}.{name}.after: unknown {what.split()[0]} {dependency!r}", f"known: {', '.join(graph)}")
            if dependency == name:
                raise PlinthError(f"{field_path}.{name}.after: {name!r} cannot run after itself")
    done: list[str] = []
    remaining = dict(graph)
    while remaining:
        ready = [n for n, after in remaining.items() if all(a in done for a in after)]
        if not ready:
            raise PlinthError(f"{field_path}: cycle {' -> '.join(_find_cycle(remaining))}", "remove one of these after: entries")
        done.extend(ready)
        for name in ready:
            del remaining[name]
    return done


def _find_cycle(graph: dict[str, list[str]]) -> list[str]:
    path: list[str] = []
    node = next(iter(graph))
    while node not in path:
        path.append(node)
        node = next(a for a in graph[node] if a in graph)
    return path[path.index(node) :] + [node]


def _ancestors(graph: dict[str, list[str]], order: list[str]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for name in order:
        result[name] = set(graph[name]).union(*(result[a] for a in graph[name]))
    return result


def step_texts(flow: LoadedFlow, node: str, step_name: str) -> list[tuple[str, str]]:
    """(field path, text) of every value of a step that may hold references."""
    step = flow.spec.nodes[node].steps[step_name]
    base = f"nodes.{node}.steps.{step_name}"
    texts: list[tuple[str, str]] = []
    if step.kind == "job":
        job = flow.jobs[step_key(node, step_name)].spec
        texts += [(f"{base}.args[{i}]", arg) for i, arg in enumerate(job.args)]
        texts += [(f"{base}.env.{k}", v) for k, v in sorted(job.env.items())]
    else:
        action = step.action
        for name, value in action.model_dump().items():
            values = value if isinstance(value, list) else [value]
            texts += [(f"{base}.{step.kind}.{name}", str(v)) for v in values]
    if step.when is not None:
        texts.append((f"{base}.when", step.when))
    return texts


def parse_ref(text: str) -> Ref:
    inner = text[2:-1]
    if m := _PARAM_REF.match(inner):
        return Ref(text, param=m.group(1))
    if m := _STEP_REF.match(inner):
        return Ref(text, step=m.group(1), output=m.group(2))
    if m := _NODE_REF.match(inner):
        return Ref(text, node=m.group(1), step=m.group(2), output=m.group(3))
    return Ref(text, variable=inner)


def _check_refs(flow: LoadedFlow, node_name: str, step_name: str, step_ancestors: set[str], node_ancestors: set[str]):
    spec = flow.spec
    step = spec.nodes[node_name].steps[step_name]
    allowed_variables = JOB_VARIABLES if step.kind == "job" else BUILTIN_VARIABLES
    for path, text in step_texts(flow, node_name, step_name):
        for match in _REF.finditer(text):
            if match.group(0) == "$$":
                continue
            ref = parse_ref(match.group(0))
            where = f"{path}: {ref.text}"
            if ref.param is not None:
                if ref.param not in spec.params:
                    raise PlinthError(f"{where}: unknown parameter {ref.param!r}", f"declare it under params: (known: {', '.join(spec.params) or 'none'})")
            elif ref.output is not None:
                source_node = ref.node or node_name
                if source_node not in spec.nodes:
                    raise PlinthError(f"{where}: unknown node {source_node!r}", f"nodes: {', '.join(spec.nodes)}")
                if ref.node is not None and ref.node == node_name:
                    raise PlinthError(f"{where}: step of the same node", f"write ${{steps.{ref.step}.outputs.{ref.output}}}")
                source_steps = spec.nodes[source_node].steps
                if ref.step not in source_steps:
                    raise PlinthError(f"{where}: node {source_node!r} has no step {ref.step!r}", f"its steps: {', '.join(source_steps)}")
                outputs = step_outputs(source_steps[ref.step])
                if ref.output not in outputs:
                    fix = "declare it under that job step's outputs: (a key of its metrics.json)" if source_steps[ref.step].kind == "job" else None
                    raise PlinthError(f"{where}: step {ref.step!r} has no output {ref.output!r} (outputs: {', '.join(outputs)})", fix)
                if ref.node is None and ref.step not in step_ancestors:
                    raise PlinthError(f"{where}: output used before it exists: step {step_name!r} does not run after {ref.step!r}", f"add {ref.step} to its after:")
                if ref.node is not None and ref.node not in node_ancestors:
                    raise PlinthError(f"{where}: output used before it exists: node {node_name!r} does not run after node {ref.node!r}", f"add {ref.node} to the node's after:")
            elif step.kind == "job" and ref.variable.startswith("samples."):
                sample_refs.parse_ref(ref.variable[len("samples."):], path)  # a version of a sample table: the job renderer resolves it
            elif ref.variable not in allowed_variables or "." in ref.variable:
                kinds = "${params.NAME}, ${steps.STEP.outputs.KEY}, ${nodes.NODE.steps.STEP.outputs.KEY}" + (", ${samples.NAME@VERSION}" if step.kind == "job" else "")
                variables = ", ".join(f"${{{v}}}" for v in allowed_variables)
                raise PlinthError(f"{where}: unknown reference", f"use {kinds} or {variables} (write $$ for a literal $)")
            yield ref
    if step.when is not None:
        parse_condition(step.when, f"nodes.{node_name}.steps.{step_name}.when")


# -- run time ---------------------------------------------------------------------------------


def ready_steps(plan: Plan, states: Mapping[str, str]) -> list[str]:
    """Pending steps whose every dependency has succeeded or been skipped, in plan order."""
    return [key for key in plan.order if states[key] == StepStatus.PENDING and all(StepStatus(states[n]).done for n in plan.needs[key])]


def blocked_steps(plan: Plan, states: Mapping[str, str]) -> list[str]:
    """Pending steps that can never run because something they wait for, directly or through
    other steps, failed or was cancelled; in plan order, so upstream ones come first."""
    blocked: list[str] = []
    for key in plan.order:  # topological: a step's dependencies are decided before it
        if states[key] == StepStatus.PENDING and any(StepStatus(states[n]).dead or n in blocked for n in plan.needs[key]):
            blocked.append(key)
    return blocked


class OutputMissing(PlinthError):
    pass


def substitute_refs(text: str, key: str, params: dict[str, str], outputs: dict[str, dict[str, str]], variables: dict[str, str] | None = None) -> str:
    """Fill the flow references of a value of step `key`.

    With `variables` None (job steps), job variables and `$$` are left for the job renderer,
    and every `$` a reference brings in is written `$$` so that renderer keeps it literal. With
    `variables` (built-in steps), they are filled too and `$$` becomes `$`.
    """
    node = key.split("/")[0]

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$$" if variables is None else "$"
        ref = parse_ref(match.group(0))
        if ref.param is not None:
            value = params[ref.param]
        elif ref.output is not None:
            source = step_key(ref.node or node, ref.step)
            if source not in outputs or ref.output not in outputs[source]:
                raise OutputMissing(f"{ref.text}: step {source} published no {ref.output!r} (was it skipped?)")
            value = outputs[source][ref.output]
        elif variables is None:
            return match.group(0)
        else:
            value = variables[ref.variable]
        return value.replace("$", "$$") if variables is None else value

    return _REF.sub(replace, text)


_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_CONDITION = re.compile(r"^\s*(?P<left>.+?)\s*(?P<op>==|!=|<=|>=|<|>)\s*(?P<right>.+?)\s*$")


def parse_condition(text: str, field_path: str = "when") -> tuple[str, str, str]:
    """`LEFT OP RIGHT` with OP one of == != < <= > >=; references count as opaque operands."""
    masked = _REF.sub(lambda m: "x" * len(m.group(0)), text)
    match = _CONDITION.match(masked)
    if not match or any(op in masked[match.end("op") :] for op in _OPERATORS):
        raise PlinthError(f"{field_path}: {text!r} is not one comparison", "write LEFT OP RIGHT with OP one of == != < <= > >=, e.g. '${steps.evaluate.outputs.better} == true'")
    return text[match.start("left") : match.end("left")], match.group("op"), text[match.start("right") : match.end("right")]


def check_condition(left: str, op: str, right: str) -> bool:
    """Compare two substituted operands: as numbers when both are numbers, else as text (== and
    != only: ordering words means nothing)."""
    left, right = _unquote(left), _unquote(right)
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        pair: tuple = (a, b)
    elif op in ("==", "!="):
        pair = (left, right)
    else:
        raise PlinthError(f"when: cannot order {left!r} and {right!r}: not both numbers")
    return {"==": pair[0] == pair[1], "!=": pair[0] != pair[1], "<": pair[0] < pair[1], "<=": pair[0] <= pair[1], ">": pair[0] > pair[1], ">=": pair[0] >= pair[1]}[op]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def builtin_argv(kind: str, values: dict, stack: str) -> list[str]:
    """The `plinth` arguments a built-in step runs, from its substituted fields. Locally the flow
    runner runs them; on a cluster the workflow's container does: one contract, the CLI. Each
    prints its result as JSON, whose fields are the step's outputs (STEP_OUTPUTS)."""
    if kind == "register":
        command = ["register", values["model"], "--job", values["job"]]
    elif kind == "evaluate":
        segments = [arg for segment in values.get("segments", []) for arg in ("--segment", segment)]
        command = ["evaluate", values["model"], values["version"], "--data", values["data"], *segments]
    elif kind == "promote":
        command = ["promote", values["model"], values["version"], "--canary", str(values["canary"])]
    else:
        raise ValueError(f"not a built-in step kind: {kind}")
    return ["model", *command, "--stack", stack, "-o", "json"]
