"""Stack configuration: the typed model of `stacks/Pulumi.<stack>.yaml`.

A stack file is a Pulumi stack file (`config:` with namespaced keys). Plinth owns the `plinth:`
namespace; other namespaces (`kubernetes:context`, ...) belong to providers and are left alone.
The same file drives `pulumi up` (infra/) and the CLI, so both read it through this model.

    config:
      plinth:target: local
      plinth:local: {home: .plinth/local, sparkCores: 2, horovodSlots: 2}

Relative paths are resolved against the project root (the directory holding Pulumi.yaml), so
a stack means the same thing from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from platform_cli.errors import PlinthError

NAMESPACE = "plinth"
DEFAULT_STACK = "local"


class ConfigModel(BaseModel):
    """Stack-file sections: camelCase keys, unknown keys rejected (a typo is an error, not a no-op)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class LocalConfig(ConfigModel):
    """The embedded platform on this machine."""

    home: str = Field(".plinth/local", description="job records, logs, registry and storage of the local platform")
    spark_cores: int = Field(2, ge=1, description="N in spark-submit --master local[N]")
    horovod_slots: int = Field(2, ge=1, description="most Horovod workers (-np) on localhost")


class StorageConfig(ConfigModel):
    # A path (local) or a URI (hdfs://, s3://) on cluster stacks. Jobs see it as ${storage}.
    root: str | None = Field(None, description="defaults to <local.home>/storage on the local target")


class RegistryConfig(ConfigModel):
    tracking_uri: str | None = Field(None, description="MLflow tracking/registry URI; defaults to SQLite under local.home")
    artifact_root: str | None = Field(None, description="where model versions are stored; defaults under local.home")


class ServingConfig(ConfigModel):
    host: str = "127.0.0.1"
    port: int = Field(8500, ge=1024, le=65535, description="HTTP port of the first model server")


class StackConfig(ConfigModel):
    """One environment of one team. Cluster stacks extend this model with their own sections."""

    target: Literal["local"] = "local"
    local: LocalConfig = LocalConfig()
    storage: StorageConfig = StorageConfig()
    registry: RegistryConfig = RegistryConfig()
    serving: ServingConfig = ServingConfig()


class Stack(BaseModel):
    """A loaded stack: its name, where it came from, and its validated config with paths resolved."""

    model_config = ConfigDict(frozen=True)

    name: str
    file: Path
    project_root: Path
    config: StackConfig

    def resolve(self, path: str) -> Path:
        return (self.project_root / os.path.expanduser(path)).resolve()

    @property
    def home(self) -> Path:
        return self.resolve(self.config.local.home)

    def location(self, value: str | None, default: Path) -> str:
        """A configured path (resolved against the project) or URI (as is), else `default`."""
        if value is None:
            return str(default)
        return value if "://" in value else str(self.resolve(value))

    @property
    def storage_root(self) -> str:
        return self.location(self.config.storage.root, self.home / "storage")

    @property
    def tracking_uri(self) -> str:
        uri = self.config.registry.tracking_uri
        if uri is None:
            return f"sqlite:///{self.home / 'registry' / 'mlflow.db'}"
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            # sqlite:///relative/path is relative to the working directory; pin it to the project.
            return f"sqlite:///{self.resolve(uri[len('sqlite:///'):])}"
        return uri

    @property
    def artifact_root(self) -> str:
        return self.location(self.config.registry.artifact_root, self.home / "registry" / "artifacts")


def project_root() -> Path:
    """The directory holding Pulumi.yaml: $PLINTH_PROJECT_DIR, else the nearest one above the
    working directory, else the checkout this package was installed from."""
    if env := os.environ.get("PLINTH_PROJECT_DIR"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return Path(__file__).resolve().parents[2]


def stacks_dir(root: Path) -> Path:
    project_file = root / "Pulumi.yaml"
    try:
        project = yaml.safe_load(project_file.read_text()) if project_file.is_file() else {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise PlinthError(f"{project_file}: not a readable Pulumi project file: {_one_line(exc)}") from None
    if not isinstance(project, dict):
        raise PlinthError(f"{project_file}: expected a mapping with name, runtime and stackConfigDir")
    return root / project.get("stackConfigDir", "stacks")


def stack_names(root: Path | None = None) -> list[str]:
    directory = stacks_dir(root or project_root())
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))


def load_stack(name: str | None = None) -> Stack:
    """Load and validate a stack file; every problem becomes one PlinthError naming the key path."""
    name = name or os.environ.get("PLINTH_STACK") or DEFAULT_STACK
    root = project_root()
    path = stacks_dir(root) / f"Pulumi.{name}.yaml"
    if not path.is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise PlinthError(f"unknown stack {name!r} (no {_shown(path, root)})", f"known stacks: {known}")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PlinthError(f"{_shown(path, root)}: not valid YAML: {_one_line(exc)}") from None
    config = parse_stack_config(document, where=_shown(path, root))
    return Stack(name=name, file=path, project_root=root, config=config)


def parse_stack_config(document: dict, where: str) -> StackConfig:
    """Pick the `plinth:` keys out of a Pulumi stack document and validate them."""
    if not isinstance(document, dict) or not isinstance(document.get("config", {}), dict):
        raise PlinthError(f"{where}: expected a Pulumi stack file with a `config:` mapping")
    prefix = f"{NAMESPACE}:"
    values = {key[len(prefix) :]: value for key, value in (document.get("config") or {}).items() if str(key).startswith(prefix)}
    try:
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        raise PlinthError(f"{where}: {describe_validation_error(exc, prefix=prefix)}") from None


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """First pydantic error as `key.path: message` (stack keys: `plinth:local.sparkCores`)."""
    error = exc.errors()[0]
    path = ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in error["loc"])
    path = path.replace(".[", "[")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling)"
    elif error["type"] == "value_error":
        message = str(error["ctx"]["error"])  # our own validators' words, without pydantic's prefix
    elif error["type"] == "literal_error":
        message = f"must be one of {error['ctx']['expected']}"
    elif error["type"] == "union_tag_invalid":
        path = ".".join(filter(None, [path, error["ctx"]["discriminator"].strip("'")]))
        message = f"must be one of {error['ctx']['expected_tags']}"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{prefix}{path}: {message}{more}"


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
