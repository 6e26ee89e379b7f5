"""Flow specs: a two-layer DAG in one file (`kind: flow`), written in YAML or XML.

The outer DAG is made of nodes (`after:` other nodes); each node is an inner DAG of steps
(`after:` other steps of the node). A step is a job (a job spec file or an inline spec, run
on the stack's target) or a built-in step: `register`, `evaluate` or `promote`.

    kind: flow
    name: ctr
    schedule: "0 3 * * *"             # optional: a CronWorkflow on Argo
    params:                            # typed: a value of the wrong type is refused before anything runs
      rows: 40000                      # short form: the type is the default's (integer here)
      epochs: {type: integer, default: null, description: passes over the data}   # null: required
    nodes:
      train:
        after: [features]
        steps:
          train:
            job: train.job.yaml       # relative to this file
            args: [--epochs, "${params.epochs}", ...]   # replaces the job file's args
            outputs: [auc]            # keys of ${output_dir}/metrics.json the step publishes
            retries: 1
            timeout: 30m
      release:
        after: [train]
        steps:
          register: {register: {model: ctr, job: "${nodes.train.steps.train.outputs.job_id}"}}
          evaluate: {after: [register], evaluate: {model: ctr, version: "${steps.register.outputs.version}", data: "${storage}/ctr/holdout"}}
          promote:
            after: [evaluate]
            when: "${steps.evaluate.outputs.better} == true"
            promote: {model: ctr, version: "${steps.register.outputs.version}", canary: 10}

References are plain `${...}` substitution, never template syntax: `${params.NAME}`,
`${steps.STEP.outputs.KEY}` (a step of the same node), `${nodes.NODE.steps.STEP.outputs.KEY}`.
The XML form (`<flow>`, as WeiFlow's users wrote it) parses into the same FlowSpec; see
`parse_flow_xml`. Checks that need the whole graph (cycles, references) live in
platform_cli.flow.plan, which every command runs before anything starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from platform_cli.durations import parse_duration
from platform_cli.errors import PlinthError, shown
from platform_cli.spec.job import LoadedJob, is_file, load_job, parse_job_spec
from platform_cli.spec.stack import CanaryShare, describe_validation_error, refuse_nul

# Node and step names become Argo template and task names, and parts of job ids.
FLOW_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
PARAM_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
BUILTIN_KINDS = ("register", "evaluate", "promote")
# Five or six cron fields (numbers, names, * / , - ? L W #), or a macro such as @daily.
_CRON = re.compile(r"^[0-9A-Za-z*/,?#-]+( +[0-9A-Za-z*/,?#-]+){4,5}$")
_CRON_MACRO = re.compile(r"^@[a-z]+$")


class FlowModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


def _check_name(name: str, what: str) -> str:
    if not re.fullmatch(FLOW_NAME_PATTERN, name):
        raise ValueError(f"{what} {name!r} must be lowercase letters, digits and '-', start with a letter, at most 40 characters")
    return name


class RegisterStep(FlowModel):
    """Register a finished training job's model as the next version (plinth model register)."""

    model: str = Field(min_length=1)
    job: str = Field(min_length=1, description="training job id, usually ${...outputs.job_id}")


class EvaluateStep(FlowModel):
    """Evaluate a version on a data set and compare it with production (plinth model evaluate)."""

    model: str = Field(min_length=1)
    version: str = Field(min_length=1)
    data: str = Field(min_length=1, description="raw impressions (Parquet), e.g. ${storage}/ctr/holdout")
    segments: list[str] = Field(default_factory=list, description="fields to break the metrics down by")


class PromoteStep(FlowModel):
    """Send a share of traffic to a version as a canary (plinth model promote --canary)."""

    model: str = Field(min_length=1)
    version: str = Field(min_length=1)
    canary: CanaryShare = Field(description="percent of traffic")


class Step(FlowModel):
    job: str | dict | None = Field(None, description="a job spec file (relative to the flow file) or an inline job spec")
    args: list[str] | None = Field(None, description="replaces the job's args")
    env: dict[str, str] = Field(default_factory=dict, description="added to the job's env")
    outputs: list[str] = Field(default_factory=list, description="metrics.json keys this job step publishes")
    # `register` would shadow pydantic's BaseModel.register; the file still says register:.
    register_: RegisterStep | None = Field(None, alias="register")
    evaluate: EvaluateStep | None = None
    promote: PromoteStep | None = None
    after: list[str] = Field(default_factory=list)
    when: str | None = Field(None, description="run only if this comparison holds, e.g. '${steps.evaluate.outputs.better} == true'")
    retries: int = Field(0, ge=0, le=10)
    timeout: float | None = Field(None, gt=0, description="seconds; '90s', '30m' and '2h' are accepted")

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value)

    @field_validator("outputs")
    @classmethod
    def _output_names(cls, outputs: list[str]) -> list[str]:
        for name in outputs:
            if not re.fullmatch(PARAM_PATTERN, name):
                raise ValueError(f"output {name!r} must be letters, digits and _")
        return outputs

    @model_validator(mode="after")
    def _one_kind(self) -> "Step":
        kinds = [kind for kind in ("job", *BUILTIN_KINDS) if self._field(kind) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a step needs exactly one of job, {', '.join(BUILTIN_KINDS)} (got {', '.join(kinds) or 'none'})")
        if self.job is None and (self.args is not None or self.env or self.outputs):
            raise ValueError("args, env and outputs belong to job steps")
        return self

    def _field(self, kind: str):
        return getattr(self, "register_" if kind == "register" else kind)

    @property
    def kind(self) -> str:
        return next(kind for kind in ("job", *BUILTIN_KINDS) if self._field(kind) is not None)

    @property
    def action(self) -> RegisterStep | EvaluateStep | PromoteStep:
        """A built-in step's fields (register:, evaluate: or promote:)."""
        return self._field(self.kind)


class Node(FlowModel):
    after: list[str] = Field(default_factory=list)
    steps: dict[str, Step] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _step_names(cls, steps: dict[str, Step]) -> dict[str, Step]:
        for name in steps:
            _check_name(name, "step name")
        return steps


PARAM_TYPES = ("string", "integer", "number", "boolean")
_INTEGER = re.compile(r"[-+]?[0-9]+")
_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def param_type_problem(kind: str, value: str) -> str | None:
    """Why `value` (parameters are text wherever they are used) is not of type `kind`; None if it is."""
    if kind == "integer" and not _INTEGER.fullmatch(value):
        return "is not an integer"
    if kind == "number" and not _NUMBER.fullmatch(value):
        return "is not a number"
    if kind == "boolean" and value not in ("true", "false"):
        return "is not a boolean (true or false)"
    return None


class Param(FlowModel):
    """A flow parameter. Values stay text (they are substituted into arguments); the type says
    which texts are allowed, checked for defaults here and for -p values by the planner."""

    type: Literal["string", "integer", "number", "boolean"] = "string"
    default: str | None = Field(None, description="null: required, given with -p NAME=VALUE")
    description: str = ""

    @model_validator(mode="after")
    def _default_fits(self) -> "Param":
        if self.default is not None and (problem := param_type_problem(self.type, self.default)):
            raise ValueError(f"default {self.default!r} {problem} (type: {self.type})")
        return self


def _param_text(value: object) -> str | None:
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def _short_param(value: object) -> dict:
    """`rows: 40000`: a parameter typed by its default as YAML wrote it (`rows: "40000"` is a
    string; null, required, is a string unless declared otherwise)."""
    kind = "boolean" if isinstance(value, bool) else "integer" if isinstance(value, int) else "number" if isinstance(value, float) else "string"
    return {"type": kind, "default": _param_text(value)}


class FlowSpec(FlowModel):
    kind: Literal["flow"]
    name: str
    description: str = ""
    schedule: str | None = Field(None, description="cron expression; a CronWorkflow on Argo")
    params: dict[str, Param] = Field(default_factory=dict, description="name: default, or name: {type, default, description}")
    nodes: dict[str, Node] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _flow_name(cls, name: str) -> str:
        return _check_name(name, "flow name")

    @field_validator("params", mode="before")
    @classmethod
    def _param_values(cls, params: object) -> object:
        if isinstance(params, dict):
            return {k: ({**v, "default": _param_text(v.get("default"))} if isinstance(v, dict) else _short_param(v)) for k, v in params.items()}
        return params

    @field_validator("params")
    @classmethod
    def _param_names(cls, params: dict[str, Param]) -> dict[str, Param]:
        for name in params:
            if not re.fullmatch(PARAM_PATTERN, name):
                raise ValueError(f"parameter {name!r} must be letters, digits and _")
        return params

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, nodes: dict[str, Node]) -> dict[str, Node]:
        for name in nodes:
            _check_name(name, "node name")
        return nodes

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        if schedule is not None and not (_CRON.fullmatch(schedule) or _CRON_MACRO.fullmatch(schedule)):
            raise ValueError(f"{shown(schedule)} is not a cron expression (five fields, e.g. '0 3 * * *')")
        return schedule


class LoadedFlow(BaseModel):
    """A validated flow, its file, and every job step's job resolved (file loaded, overrides applied)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: FlowSpec
    file: Path
    jobs: dict[str, LoadedJob]  # "node/step" -> job

    @property
    def shown_file(self) -> str:
        try:
            return str(self.file.relative_to(Path.cwd()))
        except ValueError:
            return str(self.file)


def load_flow(path: str | Path) -> LoadedFlow:
    """Read a flow file (.yaml/.yml or .xml) into a LoadedFlow; every problem is one PlinthError."""
    path = Path(path)
    if not path.is_file():
        raise PlinthError(f"flow file {str(path)!r} not found", "pass an existing file with -f")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PlinthError(f"{path}: cannot read it ({exc.strerror})") from None
    if path.suffix.lower() == ".xml" or raw.lstrip().startswith(b"<"):
        document = parse_flow_xml(raw, where=str(path))
    else:
        try:
            document = yaml.safe_load(raw.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise PlinthError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    spec = parse_flow_spec(document, where=str(path))
    return LoadedFlow(spec=spec, file=path.resolve(), jobs=_load_jobs(spec, path))


def parse_flow_spec(document: object, where: str) -> FlowSpec:
    if not isinstance(document, dict):
        raise PlinthError(f"{where}: expected a mapping with kind: flow, name and nodes")
    if document.get("kind") != "flow":
        raise PlinthError(f"{where}: kind: must be flow (got {document.get('kind')!r})", "start the file with kind: flow")
    refuse_nul(document, where)
    try:
        return FlowSpec.model_validate(document)
    except ValidationError as exc:
        raise PlinthError(f"{where}: {describe_validation_error(exc)}") from None


def _load_jobs(spec: FlowSpec, path: Path) -> dict[str, LoadedJob]:
    from platform_cli.kinds import job_kind

    jobs = {}
    for node_name, node in spec.nodes.items():
        for step_name, step in node.steps.items():
            if step.job is None:
                continue
            field = f"nodes.{node_name}.steps.{step_name}.job"
            if isinstance(step.job, str):
                job_file = path.parent / step.job
                if not is_file(job_file):
                    raise PlinthError(f"{path}: {field}: job file {shown(step.job)} not found next to the flow file")
                job = load_job(job_file)
            else:
                job = LoadedJob(spec=parse_job_spec(step.job, where=f"{path}: {field}"), file=path.resolve())
                if not is_file(job.base_dir / job.spec.script):
                    raise PlinthError(f"{path}: {field}.script: {shown(job.spec.script)} not found next to the flow file")
            if job_kind(job.spec.kind).runs_until_cancelled:
                raise PlinthError(f"{path}: {field}: a {job.spec.kind} job runs until cancelled, so no step could ever follow it",
                                  f"start it on its own: plinth job submit -f {shown(str(step.job)) if isinstance(step.job, str) else 'JOB'}")
            overrides = {"env": {**job.spec.env, **step.env}}
            if step.args is not None:
                overrides["args"] = list(step.args)
            jobs[f"{node_name}/{step_name}"] = LoadedJob(spec=job.spec.model_copy(update=overrides), file=job.file)
    return jobs


# -- XML ------------------------------------------------------------------------------------
#
#   <flow name="ctr" schedule="0 3 * * *">
#     <param name="rows" value="40000"/>            <!-- no value: required -->
#     <node name="train" after="features">
#       <step name="train" job="train.job.yaml" retries="1" timeout="30m">
#         <arg>--epochs</arg><arg>${params.epochs}</arg>
#         <env name="SEED" value="7"/>
#         <output>auc</output>
#       </step>
#       <step name="register" after="train"><register model="ctr" job="..."/></step>
#     </node>
#   </flow>
#
# Lists in attributes (after, segments) are comma-separated. An inline job is a <job kind=...
# name=... script=...> element holding <arg>/<env> like a step.

_STEP_ATTRIBUTES = {"job", "after", "when", "retries", "timeout"}
_BUILTIN_ATTRIBUTES = {
    "register": {"model", "job"},
    "evaluate": {"model", "version", "data", "segments"},
    "promote": {"model", "version", "canary"},
}


class _XmlError(Exception):
    pass


def parse_flow_xml(raw: bytes, where: str) -> dict:
    """The XML form as the same document the YAML form is, for parse_flow_spec.

    Documents with a DOCTYPE are refused outright: without one, no entity can be declared, so
    neither entity expansion ("billion laughs") nor external entities are possible.
    """
    try:
        root = _parse_xml_without_doctype(raw)
        return _flow_from_xml(root)
    except _XmlError as exc:
        raise PlinthError(f"{where}: {exc}") from None


def _parse_xml_without_doctype(raw: bytes):
    from xml.etree.ElementTree import TreeBuilder
    from xml.parsers import expat

    builder = TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(*_args):
        raise _XmlError("DOCTYPE and ENTITY declarations are not allowed in a flow file")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as exc:
        raise _XmlError(f"not valid XML: {expat.errors.messages[exc.code]} at line {exc.lineno} column {exc.offset}") from None
    return builder.close()


def _flow_from_xml(root) -> dict:
    if root.tag != "flow":
        raise _XmlError(f"the root element must be <flow>, not <{root.tag}>")
    _only(root, {"name", "schedule", "description"}, {"param", "node", "description"})
    document: dict = {"kind": "flow", **{k: v for k, v in root.attrib.items()}}
    params: dict = {}
    nodes: dict = {}
    for child in root:
        if child.tag == "description":
            document["description"] = (child.text or "").strip()
        elif child.tag == "param":
            _only(child, {"name", "value", "type", "description"}, set())
            name = _required(child, "name")
            if name in params:
                raise _XmlError(f"<param name={name!r}> is declared twice")
            params[name] = _xml_param(child)
        else:
            _only(child, {"name", "after"}, {"step"})
            name = _required(child, "name")
            if name in nodes:
                raise _XmlError(f"<node name={name!r}> is declared twice")
            steps = {}
            for step in child:
                step_name = _required(step, "name")
                if step_name in steps:
                    raise _XmlError(f"<step name={step_name!r}> is declared twice in node {name!r}")
                steps[step_name] = _step_from_xml(step)
            nodes[name] = {"after": _list(child.get("after")), "steps": steps}
    if params:
        document["params"] = params
    document["nodes"] = nodes
    return document


def _xml_param(element) -> dict:
    """<param name value [type] [description]>: without a type, the value's text decides it as
    it would unquoted in YAML (value="40000" is an integer), so both forms give the same spec."""
    value = element.get("value")
    if element.get("type") is None and value is not None:
        kind = "integer" if _INTEGER.fullmatch(value) else "number" if _NUMBER.fullmatch(value) else "boolean" if value in ("true", "false") else "string"
    else:
        kind = element.get("type", "string")
    return {"type": kind, "default": value, **({"description": element.get("description")} if element.get("description") else {})}


def _step_from_xml(element) -> dict:
    _only(element, {"name", *_STEP_ATTRIBUTES}, {"arg", "env", "output", "job", *_BUILTIN_ATTRIBUTES})
    step: dict = {key: value for key, value in element.attrib.items() if key in ("job", "when", "retries", "timeout")}
    if "after" in element.attrib:
        step["after"] = _list(element.get("after"))
    args, env, outputs = _job_children(element)
    if args is not None:
        step["args"] = args
    if env:
        step["env"] = env
    if outputs:
        step["outputs"] = outputs
    for child in element:
        if child.tag == "job":
            if "job" in step:
                raise _XmlError(f"step {element.get('name')!r}: a job attribute and a <job> element; use one")
            _only(child, {"kind", "name", "script", "workers"}, {"arg", "env", "resources", "conf", "label"})
            inline: dict = dict(child.attrib)
            job_args, job_env, _ = _job_children(child)
            inline.update({"args": job_args or [], "env": job_env})
            for sub in child:
                if sub.tag == "resources":
                    inline["resources"] = dict(sub.attrib)
                elif sub.tag in ("conf", "label"):
                    inline.setdefault("conf" if sub.tag == "conf" else "labels", {})[_required(sub, "name")] = _required(sub, "value")
            step["job"] = inline
        elif child.tag in _BUILTIN_ATTRIBUTES:
            _only(child, _BUILTIN_ATTRIBUTES[child.tag], set())
            action: dict = dict(child.attrib)
            if "segments" in action:
                action["segments"] = _list(action["segments"])
            step[child.tag] = action
    return step


def _job_children(element) -> tuple[list[str] | None, dict[str, str], list[str]]:
    args = [child.text or "" for child in element if child.tag == "arg"]
    env = {_required(child, "name"): child.get("value", "") for child in element if child.tag == "env"}
    outputs = [(child.text or "").strip() for child in element if child.tag == "output"]
    return (args if any(child.tag == "arg" for child in element) else None), env, outputs


def _only(element, attributes: set[str], children: set[str]) -> None:
    for key in element.attrib:
        if key not in attributes:
            raise _XmlError(f"<{element.tag}>: unknown attribute {key!r} (known: {', '.join(sorted(attributes))})")
    for child in element:
        if child.tag not in children:
            known = ", ".join(f"<{c}>" for c in sorted(children)) or "none"
            raise _XmlError(f"<{element.tag}>: unexpected element <{child.tag}> (allowed: {known})")


def _required(element, attribute: str) -> str:
    value = element.get(attribute)
    if not value:
        raise _XmlError(f"<{element.tag}>: attribute {attribute!r} missing")
    return value


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]
