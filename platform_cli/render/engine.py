"""The Jinja environment every template is rendered with."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import jinja2
import yaml

from platform_cli.errors import PlinthError

class _QuotingDumper(yaml.SafeDumper):
    """Every string double-quoted: PyYAML's plain and single-quoted styles do not round-trip
    all characters (NEL, for one), its double-quoted style escapes them."""


_QuotingDumper.add_representer(str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"'))


def quote(value: object) -> str:
    """One YAML flow value for `value`, written by PyYAML's emitter (which escapes whatever YAML
    cannot hold literally) on a single line.

    Strings always come out double-quoted, so "true", "1.0", "- x" or "a: b" stay strings, and
    newlines, quotes and `{{ }}` stay inside the scalar.
    """
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # StrictUndefined: raise instead of printing nothing
    if isinstance(value, str) and re.search("[\ud800-\udfff]", value):
        raise PlinthError("a value contains an unpaired surrogate character", "pass valid UTF-8 text")
    text = yaml.dump(
        value,
        Dumper=_QuotingDumper,
        default_flow_style=True,
        width=float("inf"),
        allow_unicode=True,
        sort_keys=False,
    )
    return text.removesuffix("\n...\n").removesuffix("\n")


def templates_dir() -> Path:
    return Path(os.environ.get("PLINTH_TEMPLATES") or Path(__file__).resolve().parents[2] / "templates")


@lru_cache(maxsize=4)
def environment(directory: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, never an empty string
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["quote"] = quote
    return env


def render_template(name: str, context: dict) -> str:
    try:
        template = environment(str(templates_dir())).get_template(name)
    except jinja2.TemplateNotFound:
        raise PlinthError(f"template {name!r} not found under {templates_dir()}") from None
    try:
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        raise PlinthError(f"template {name}: {exc.message}", "pass the variable from the renderer or fix the template") from None
