"""plinth version: what this Plinth is and what it renders for."""

from __future__ import annotations

import typer

from platform_cli.output import OutputFormat, OutputOption, emit


def version(output: OutputFormat = OutputOption):
    """Show Plinth's version, the engine versions it renders for, and the Python it runs on."""
    from platform_cli.version import LOCAL_FRAMEWORKS, version_info

    info = version_info()
    python = info["python"]
    rows = [("plinth", info["plinth"], ""), ("python", python["version"], python["implementation"])]
    rows += [(engine, v, "renders for (cluster)") for engine, v in info["cluster_engines"].items()]
    rows += [(name, v, f"local: {LOCAL_FRAMEWORKS[name]}") for name, v in info["local_frameworks"].items()]
    emit(info, output, lambda: (["component", "version", "role"], rows))


def show_version(value: bool) -> None:
    """`plinth --version`: the same as `plinth version`."""
    if value:
        version(OutputFormat.table)
        raise typer.Exit()
