"""The seams hold: knowledge of a job kind lives in its module under platform_cli/kinds, and a
stack's target is read in one place (platform_cli/targets). Adding a kind or a target is one
module; these tests fail when code elsewhere starts branching on either again."""

from __future__ import annotations

import ast
from pathlib import Path

from platform_cli.kinds import KINDS, all_kinds

PACKAGE = Path(__file__).resolve().parents[2] / "platform_cli"


def modules(*excluded: str):
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(excluded):
            yield relative, ast.parse(path.read_text())


def test_no_code_outside_the_kind_modules_branches_on_a_kind() -> None:
    spec_classes = {kind.spec.__name__ for kind in all_kinds()}
    found = []
    for name, tree in modules("kinds/"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                constants = [n.value for n in [node.left, *node.comparators] if isinstance(n, ast.Constant)]
                constants += [e.value for n in node.comparators if isinstance(n, (ast.Tuple, ast.List, ast.Set)) for e in n.elts if isinstance(e, ast.Constant)]
                if set(constants) & set(KINDS):
                    found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Name) and node.id in spec_classes:
                found.append(f"{name}:{node.lineno}: {node.id}")
    assert found == []


def test_the_stack_target_is_read_only_by_the_target_registry() -> None:
    readers = [
        f"{name}:{node.lineno}"
        for name, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "target" and ast.unparse(node.value).endswith("config")
    ]
    assert readers == ["targets/__init__.py:" + str(_line_of("targets/__init__.py", "return stack.config.target"))]


def _line_of(relative: str, text: str) -> int:
    return next(i for i, line in enumerate((PACKAGE / relative).read_text().splitlines(), 1) if text in line)


def test_every_kind_brings_its_templates() -> None:
    templates = PACKAGE.parent / "templates"
    for kind in all_kinds():
        assert (templates / kind.template_dir / "local.yaml.j2").is_file()
        assert (templates / kind.template_dir / "kubernetes.yaml.j2").is_file()
