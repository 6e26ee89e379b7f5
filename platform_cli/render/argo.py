"""Render a flow as an Argo Workflow (a CronWorkflow when it has a schedule): pure, validated.

Shape, mirroring the flow's two layers:

    entrypoint `main`: a DAG with one task per node (dependencies = the node's after:)
    `node-<node>`:     a DAG with one task per step (dependencies = the step's after:, when:)
    `<node>-<step>`:   a job step: a resource template creating the workload that
                       render_cluster_job renders (SparkApplication, MPIJob, TFJob, batch Job),
                       with its success/failure conditions; when the job ships its code in a
                       ConfigMap, a steps template applying the ConfigMap first
                       a built-in step: a container running the same `plinth model ...` argv
                       the local runner runs, in the team's image

References become Argo's own: `${params.X}` -> `{{workflow.parameters.X}}`; a job step's
outputs (job_id, output_dir, ...) are fixed at render time, since its job id is
`<job name>-{{workflow.name}}`; a built-in step's outputs are fields of the JSON it prints
(`{{=jsonpath(tasks['evaluate'].outputs.result, '$.better')}}`), so they are passed between
steps of one node. What Argo cannot express this way (metrics.json outputs of a job step,
built-in outputs used in another node) is refused here, naming the reference.

Retries a job step declares become the engine's own restarts of the same job (Spark
restartPolicy, runPolicy/backoffLimit), so a restarted training job finds its checkpoints, as
it does locally; a step that declares none keeps the cluster renderer's default.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from platform_cli import job_outputs
from platform_cli.errors import PlinthError
from platform_cli.flow.plan import Plan, builtin_argv, parse_ref, step_key
from platform_cli.kinds import job_kind
from platform_cli.render.context import job_paths
from platform_cli.render.validate import validate_objects
from platform_cli.spec.team_objects import WORKFLOW_SERVICE_ACCOUNT

if TYPE_CHECKING:
    from platform_cli.spec.stack import Stack

API_VERSION = "argoproj.io/v1alpha1"
WORKFLOW_NAME = "{{workflow.name}}"
# Argo runs workflow pods as this service account; the team stack creates it with the rights
# to create and follow the team's workloads (infra/components/team.py).
SERVICE_ACCOUNT = WORKFLOW_SERVICE_ACCOUNT
_REF = re.compile(r"\$\$|\$\{([^}]*)\}")


def render_flow(plan: Plan, stack: Stack) -> list[dict]:
    """[Workflow] or [CronWorkflow] for a team stack, schema-validated."""
    from platform_cli.targets import require

    require(stack, "flow submit")
    if stack.config.team is None:
        raise PlinthError(f"stack {stack.name!r} is a {stack.role} stack; Argo workflows run in a team's namespace", "render for a team stack, e.g. --stack team-feed")
    from platform_cli.render.cluster import render_cluster_job

    spec = plan.spec
    team = stack.config.team
    # Job ids are `<job name>-{{workflow.name}}`. Jobs are rendered (and their names checked)
    # with a stand-in as long as the longest workflow name, a CronWorkflow's `<name>-<unix time>`.
    stand_in = f"{spec.name}-{'0' * 10}"
    templates: list[dict] = []
    node_templates: list[dict] = []
    outer_tasks: list[dict] = []
    static_outputs: dict[str, dict[str, str]] = {}
    for node_name in plan.node_order:
        node = spec.nodes[node_name]
        tasks = []
        for step_name, step in node.steps.items():
            key = step_key(node_name, step_name)
            template_name = f"{node_name}-{step_name}"
            task: dict = {"name": step_name, "template": template_name}
            if step.after:
                task["dependencies"] = list(step.after)
            try:
                if step.kind == "job":
                    job = plan.flow.jobs[key]
                    args = [_argo_value(key, a, static_outputs, stack.storage_root, for_job=True) for a in job.spec.args]
                    env = {k: _argo_value(key, v, static_outputs, stack.storage_root, for_job=True) for k, v in job.spec.env.items()}
                    job = job.model_copy(update={"spec": job.spec.model_copy(update={"args": args, "env": env, "labels": {**job.spec.labels, "plinth.dev/flow": spec.name}})})
                    job_id = f"{job.spec.name}-{stand_in}"
                    kind = job_kind(job.spec.kind)
                    objects = render_cluster_job(job, stack, job_id).documents
                    if "retries" in step.model_fields_set:  # else the job renderer's own default stands
                        objects[-1] = kind.with_retries(objects[-1], step.retries)
                    validate_objects(objects)
                    objects = _replace(objects, stand_in, WORKFLOW_NAME)
                    templates.extend(_job_templates(template_name, objects, kind.argo_conditions(objects[-1]), step.timeout))
                    paths = job_paths(stack.storage_root, job_id.replace(stand_in, WORKFLOW_NAME))
                    static_outputs[key] = {"job_id": job_id.replace(stand_in, WORKFLOW_NAME), **paths, "model_dir": job_outputs.model_dir(paths["output_dir"])}
                else:
                    # Outputs of earlier steps are in scope in the node's DAG only: the task
                    # passes them in as input parameters, the container reads those.
                    inputs: dict[str, str] = {}
                    values = {
                        name: ([_argo_value(key, v, static_outputs, stack.storage_root, inputs=inputs) for v in value] if isinstance(value, list) else _argo_value(key, str(value), static_outputs, stack.storage_root, inputs=inputs))
                        for name, value in step.action.model_dump().items()
                    }
                    container = {"image": team.image, "command": ["plinth"], "args": builtin_argv(step.kind, values, stack.name)}
                    template = {"name": template_name}
                    if inputs:
                        template["inputs"] = {"parameters": [{"name": name} for name in inputs]}
                        task["arguments"] = {"parameters": [{"name": name, "value": value} for name, value in inputs.items()]}
                    template["container"] = container
                    if step.retries:
                        template["retryStrategy"] = {"limit": step.retries}
                    if step.timeout:
                        template["timeout"] = f"{int(step.timeout)}s"
                    templates.append(template)
                if step.when is not None:
                    task["when"] = _argo_value(key, step.when, static_outputs, stack.storage_root)
            except PlinthError as exc:
                raise PlinthError(f"{plan.flow.shown_file}: nodes.{node_name}.steps.{step_name}: {exc.message}", exc.fix) from None
            tasks.append(task)
        node_templates.append({"name": f"node-{node_name}", "dag": {"tasks": tasks}})
        outer: dict = {"name": node_name, "template": f"node-{node_name}"}
        if node.after:
            outer["dependencies"] = list(node.after)
        outer_tasks.append(outer)
    names = [t["name"] for t in [*node_templates, *templates]]
    if duplicate := next((n for n in names if names.count(n) > 1 or n == "main"), None):
        raise PlinthError(f"{plan.flow.shown_file}: two Argo templates would be named {duplicate!r}", "rename a node or step")
    labels = {"app.kubernetes.io/managed-by": "plinth", "plinth.dev/flow": spec.name, "plinth.dev/team": team.name}  # copied where used: no YAML anchors
    workflow_spec: dict = {
        "entrypoint": "main",
        "serviceAccountName": SERVICE_ACCOUNT,
        "templates": [{"name": "main", "dag": {"tasks": outer_tasks}}, *node_templates, *templates],
        "podGC": {"strategy": "OnWorkflowSuccess"},
    }
    if plan.params:
        workflow_spec["arguments"] = {"parameters": [{"name": name, "value": value} for name, value in plan.params.items()]}
    metadata = {"namespace": team.namespace_name, "labels": dict(labels)}
    if spec.description:
        metadata["annotations"] = {"plinth.dev/description": spec.description}
    if spec.schedule:
        obj = {
            "apiVersion": API_VERSION,
            "kind": "CronWorkflow",
            "metadata": {"name": spec.name, **metadata},
            "spec": {"schedules": [spec.schedule], "concurrencyPolicy": "Forbid", "workflowMetadata": {"labels": dict(labels)}, "workflowSpec": workflow_spec},
        }
    else:
        obj = {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": {"generateName": f"{spec.name}-", **metadata}, "spec": workflow_spec}
    validate_objects([obj])
    return [obj]


def _job_templates(name: str, objects: list[dict], conditions: tuple[str, str], timeout: float | None) -> list[dict]:
    import yaml

    success, failure = conditions
    workload = {
        "name": f"{name}-run" if len(objects) > 1 else name,
        "resource": {
            "action": "create",
            "setOwnerReference": True,  # deleting the workflow deletes its jobs
            "successCondition": success,
            "failureCondition": failure,
            "manifest": yaml.safe_dump(objects[-1], sort_keys=False),
        },
    }
    if timeout:
        workload["timeout"] = f"{int(timeout)}s"
    if len(objects) == 1:
        return [workload]
    setup = [
        {"name": f"{name}-{obj['kind'].lower()}-{i}", "resource": {"action": "apply", "setOwnerReference": True, "manifest": yaml.safe_dump(obj, sort_keys=False)}}
        for i, obj in enumerate(objects[:-1])
    ]
    steps = [[{"name": t["name"].removeprefix(f"{name}-"), "template": t["name"]} for t in setup], [{"name": "run", "template": workload["name"]}]]
    return [{"name": name, "steps": steps}, *setup, workload]


def _argo_value(key: str, text: str, static_outputs: dict[str, dict[str, str]], storage: str, for_job: bool = False, inputs: dict[str, str] | None = None) -> str:
    """A flow value with its references in Argo's terms. For job steps, job variables (${storage}
    and the like) stay for the cluster renderer; for built-in steps `${storage}` is the team
    stack's storage root. With `inputs`, a built-in step's reference to another step's output
    becomes an input parameter (recorded in `inputs` for the task to pass)."""
    node = key.split("/")[0]

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$$" if for_job else "$"
        ref = parse_ref(match.group(0))
        if ref.param is not None:
            return "{{workflow.parameters." + ref.param + "}}"
        if ref.output is None:
            if for_job:
                return match.group(0)
            return storage
        source = step_key(ref.node or node, ref.step)
        if source in static_outputs:
            if ref.output not in static_outputs[source]:
                raise PlinthError(f"{ref.text}: a job's metrics.json outputs cannot be read by Argo", "compare metrics in an evaluate step, whose outputs Argo passes on")
            value = static_outputs[source][ref.output]
            return value.replace("$", "$$") if for_job else value
        if for_job:
            raise PlinthError(f"{ref.text}: a job step on Argo can use parameters and other jobs' outputs only", "pass built-in step outputs to built-in steps")
        if ref.node is not None:
            raise PlinthError(f"{ref.text}: on Argo a built-in step's output is passed within its node only", f"move {ref.step} into node {node}")
        expression = "{{=jsonpath(tasks['" + ref.step + "'].outputs.result, '$." + ref.output + "')}}"
        if inputs is None:  # a task's when: the DAG's own scope
            return expression
        inputs[f"{ref.step}-{ref.output}"] = expression
        return "{{inputs.parameters." + ref.step + "-" + ref.output + "}}"

    return _REF.sub(replace, text)


def _replace(value, old: str, new: str):
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    return value
