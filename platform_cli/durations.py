"""Durations as users write them in spec files: 500ms, 90s, 30m, 2h, 1d (a bare number is seconds)."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: object) -> object:
    """Seconds for a duration string; anything else is returned for the field's own type check
    (a pydantic `mode="before"` validator). ValueError names the forms it takes."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a duration (write 500ms, 90s, 30m, 2h or 1d)")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 3600 -> 1h, 300 -> 5m, 90 -> 90s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
