"""Laying out a planned flow for the browser: outer nodes as boxes holding their steps, in columns
by dependency depth, with arrows between nodes and between steps of a node. A pure function of
a Plan; the page draws the result as SVG and colours steps by their live state."""

from __future__ import annotations

from platform_cli.flow.graph import describe_step
from platform_cli.flow.plan import Plan, step_key

STEP_W, STEP_H = 170, 40
STEP_GAP_X, STEP_GAP_Y = 28, 12
NODE_PAD, NODE_TITLE = 12, 26
NODE_GAP_X, NODE_GAP_Y = 56, 24
MARGIN = 8


def _depths(graph: dict[str, list[str]], order: list[str]) -> dict[str, int]:
    """Longest-path depth of each name, given a topological order."""
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = max((depth[a] + 1 for a in graph[name]), default=0)
    return depth


def layout(plan: Plan) -> dict:
    spec = plan.spec
    node_depth = _depths({n: spec.nodes[n].after for n in plan.node_order}, plan.node_order)
    boxes: dict[str, dict] = {}
    for name in plan.node_order:
        steps = spec.nodes[name].steps
        order = [key.split("/")[1] for key in plan.order if key.startswith(f"{name}/")]
        depth = _depths({s: steps[s].after for s in order}, order)
        columns = max(depth.values(), default=0) + 1
        rows: dict[int, int] = {}
        placed = []
        for step in order:
            row = rows.get(depth[step], 0)
            rows[depth[step]] = row + 1
            placed.append((step, depth[step], row))
        width = 2 * NODE_PAD + columns * STEP_W + (columns - 1) * STEP_GAP_X
        height = NODE_TITLE + NODE_PAD + max(rows.values(), default=1) * (STEP_H + STEP_GAP_Y) - STEP_GAP_Y + NODE_PAD
        boxes[name] = {"name": name, "w": width, "h": height, "after": list(spec.nodes[name].after), "placed": placed}

    # Columns of nodes; each column as wide as its widest node.
    columns: dict[int, list[str]] = {}
    for name in plan.node_order:
        columns.setdefault(node_depth[name], []).append(name)
    x = MARGIN
    total_h = 0
    for depth in sorted(columns):
        y = MARGIN
        for name in columns[depth]:
            box = boxes[name]
            box["x"], box["y"] = x, y
            y += box["h"] + NODE_GAP_Y
        total_h = max(total_h, y - NODE_GAP_Y + MARGIN)
        x += max(boxes[n]["w"] for n in columns[depth]) + NODE_GAP_X
    total_w = x - NODE_GAP_X + MARGIN

    nodes, edges = [], []
    step_at: dict[str, dict] = {}
    for name in plan.node_order:
        box = boxes[name]
        steps = []
        for step, column, row in box.pop("placed"):
            key = step_key(name, step)
            cell = {
                "key": key, "name": step, "what": describe_step(plan, key),
                "x": box["x"] + NODE_PAD + column * (STEP_W + STEP_GAP_X),
                "y": box["y"] + NODE_TITLE + row * (STEP_H + STEP_GAP_Y),
                "w": STEP_W, "h": STEP_H,
            }
            steps.append(cell)
            step_at[key] = cell
        nodes.append({**box, "steps": steps})
    for name in plan.node_order:
        for step_name, step in spec.nodes[name].steps.items():
            to = step_at[step_key(name, step_name)]
            for before in step.after:
                source = step_at[step_key(name, before)]
                edges.append(_arrow(source, to))
        for before in spec.nodes[name].after:
            edges.append({**_arrow(boxes[before], boxes[name]), "outer": True})
    return {"width": total_w, "height": total_h, "nodes": nodes, "edges": edges, "schedule": spec.schedule}


def _arrow(source: dict, target: dict) -> dict:
    """From the middle of source's right edge to the middle of target's left edge."""
    return {"x1": source["x"] + source["w"], "y1": source["y"] + source["h"] / 2,
            "x2": target["x"], "y2": target["y"] + target["h"] / 2, "outer": False}
