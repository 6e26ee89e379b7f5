"""Drawing a planned flow: a terminal tree, Graphviz dot, or Mermaid. Pure functions of a Plan."""

from __future__ import annotations

from platform_cli.flow.plan import Plan, step_key


def describe_step(plan: Plan, key: str) -> str:
    step = plan.step(key)
    if step.kind == "job":
        job = plan.flow.jobs[key].spec
        what = f"{job.kind} job {job.name}" + (f" x{job.workers}" if job.workers > 1 else "")
    elif step.kind == "register":
        what = f"register {step.action.model}"
    elif step.kind == "evaluate":
        what = f"evaluate {step.action.model}"
    else:
        what = f"promote {step.action.model} canary {step.action.canary}%"
    extras = []
    if step.when:
        extras.append(f"when {step.when}")
    if step.retries:
        extras.append(f"retries {step.retries}")
    if step.timeout:
        extras.append(f"timeout {_seconds(step.timeout)}")
    return what + (f"  [{'; '.join(extras)}]" if extras else "")


def _seconds(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def text_graph(plan: Plan) -> str:
    spec = plan.spec
    steps = sum(len(node.steps) for node in spec.nodes.values())
    header = f"flow {spec.name}: {len(spec.nodes)} nodes, {steps} steps" + (f", schedule {spec.schedule!r}" if spec.schedule else "")
    lines = [header]
    width = max(len(k.split("/")[1]) + len(_after(plan, k)) for k in plan.order)
    for i, node_name in enumerate(plan.node_order):
        node = spec.nodes[node_name]
        last_node = i == len(plan.node_order) - 1
        after = f"  (after {', '.join(node.after)})" if node.after else ""
        lines.append(f"{'└──' if last_node else '├──'} {node_name}{after}")
        keys = [k for k in plan.order if k.startswith(f"{node_name}/")]
        for j, key in enumerate(keys):
            name = key.split("/")[1] + _after(plan, key)
            lead = "    " if last_node else "│   "
            lines.append(f"{lead}{'└──' if j == len(keys) - 1 else '├──'} {name.ljust(width)}   {describe_step(plan, key)}")
    return "\n".join(lines) + "\n"


def _after(plan: Plan, key: str) -> str:
    after = plan.step(key).after
    return f" ← {', '.join(after)}" if after else ""


def dot_graph(plan: Plan) -> str:
    spec = plan.spec
    lines = [f'digraph "{spec.name}" {{', "  compound=true;", '  node [shape=box, fontname="Helvetica"];']
    for node_name in plan.node_order:
        lines.append(f'  subgraph "cluster_{node_name}" {{')
        lines.append(f'    label="{node_name}";')
        for step_name in spec.nodes[node_name].steps:
            key = step_key(node_name, step_name)
            label = f"{step_name}\\n{_escape(describe_step(plan, key))}"
            lines.append(f'    "{key}" [label="{label}"];')
        lines.append("  }")
    for node_name in plan.node_order:
        node = spec.nodes[node_name]
        for step_name, step in node.steps.items():
            for before in step.after:
                lines.append(f'  "{step_key(node_name, before)}" -> "{step_key(node_name, step_name)}";')
        for upstream in node.after:
            # One edge per node dependency, drawn between the clusters.
            src, dst = _last_step(plan, upstream), _first_step(plan, node_name)
            lines.append(f'  "{src}" -> "{dst}" [ltail="cluster_{upstream}", lhead="cluster_{node_name}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid_graph(plan: Plan) -> str:
    spec = plan.spec
    lines = ["flowchart LR"]
    for node_name in plan.node_order:
        lines.append(f"  subgraph {node_name}")
        for step_name in spec.nodes[node_name].steps:
            key = step_key(node_name, step_name)
            lines.append(f'    {_mermaid_id(key)}["{step_name}<br/>{_escape(describe_step(plan, key)).replace(chr(92) + chr(34), "#quot;")}"]')
        lines.append("  end")
    for node_name in plan.node_order:
        node = spec.nodes[node_name]
        for step_name, step in node.steps.items():
            for before in step.after:
                lines.append(f"  {_mermaid_id(step_key(node_name, before))} --> {_mermaid_id(step_key(node_name, step_name))}")
        for upstream in node.after:
            lines.append(f"  {upstream} --> {node_name}")
    return "\n".join(lines) + "\n"


def _first_step(plan: Plan, node: str) -> str:
    return next(k for k in plan.order if k.startswith(f"{node}/"))


def _last_step(plan: Plan, node: str) -> str:
    return [k for k in plan.order if k.startswith(f"{node}/")][-1]


def _mermaid_id(key: str) -> str:
    return key.replace("/", "__").replace("-", "_")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
