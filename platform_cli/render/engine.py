"""The Jinja environment every template is rendered with."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

import jinja2

from platform_cli.errors import PlinthError

# Characters PyYAML refuses in a document, plus the ones YAML treats as line breaks inside a
# quoted scalar (NEL, LS, PS): all are written as \u escapes so the value survives unchanged.
_ESCAPE_IN_YAML = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def quote(value: object) -> str:
    """One YAML flow value for `value`: JSON (a YAML subset) with YAML-hostile characters escaped.

    Strings always come out double-quoted, so "true", "1.0", "- x" or "a: b" stay strings, and
    newlines, quotes and `{{ }}` stay inside the scalar.
    """
    if isinstance(value, str) and re.search("[\ud800-\udfff]", value):
        raise PlinthError("a value contains an unpaired surrogate character", "pass valid UTF-8 text")
    text = json.dumps(value, ensure_ascii=False, sort_keys=False)
    return _ESCAPE_IN_YAML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


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
