"""Rendering: job spec + stack -> manifest text. Pure functions, no side effects.

Templates under `templates/<kind>/<target>.yaml.j2` lay out structure only; every decision
(commands, thread counts, paths) is made in Python and passed in. Values reach the YAML only
through the `quote` filter, which emits one valid YAML scalar (or flow collection) per value,
so no value can add keys or documents to a manifest.
"""
