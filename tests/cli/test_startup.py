"""The CLI must start fast: no heavy framework is imported until a command needs it."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("tensorflow", "pyspark", "horovod", "kserve", "mlflow", "pulumi", "pulumi_kubernetes", "kubernetes", "pandas", "numpy", "fastapi", "deltalake", "pyarrow")


def loaded_modules(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stderr.split())


def test_importing_the_cli_loads_no_heavy_framework() -> None:
    assert loaded_modules("import platform_cli.main") == set()


def test_help_of_every_group_loads_no_heavy_framework() -> None:
    for group in ("", "stack", "job", "model", "data", "flow", "usage", "console"):
        argv = ["plinth", *([group] if group else []), "--help"]
        code = f"sys.argv = {argv!r}\nfrom platform_cli.main import app\ntry:\n    app()\nexcept SystemExit:\n    pass"
        assert loaded_modules(code) == set(), group


def test_help_loads_neither_completion_nor_yaml() -> None:
    """Completion values and `plinth version` are looked up only when asked for: `plinth --help`
    pays for neither (nor for PyYAML, which only -o yaml and spec files need)."""
    code = "sys.argv = ['plinth', '--help']\nfrom platform_cli.main import app\ntry:\n    app()\nexcept SystemExit:\n    pass"
    probe = f"import sys\n{code}\nprint(' '.join(m for m in ('platform_cli.completion', 'platform_cli.version', 'platform_cli.render.validate', 'yaml') if m in sys.modules), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stderr.split() == []
