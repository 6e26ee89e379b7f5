"""What a stack creates, without a cluster or a Pulumi CLI: the real Pulumi program (infra/) run
in-process under Pulumi's mocks, every resource it registers captured.

`plinth stack render` prints the captured Kubernetes objects (for review and GitOps diffs), the
tests assert on them, and the infra benchmark times this evaluation. A team stack's
StackReference to its platform stack is answered with the outputs of rendering that platform
stack first, so the contract between the two programs is exercised too.

What this cannot show: what the Kubernetes provider and the API server do with the inputs
(server-side defaults, admission webhooks, names Pulumi would generate), what the Helm charts
expand to (a release is captured as its chart, version and values), and the state of a real
deployment.
"""

from __future__ import annotations

import asyncio

import json
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from platform_cli.errors import PlinthError
from platform_cli.spec.stack import Stack, StackConfig, load_stack

PROJECT = "plinth"
ORGANIZATION = "organization"   # what Pulumi calls the organization of a self-managed backend
REDACTED = "(secret)"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# A manifest file the provider applies itself: the engines' vendored CRDs (engines.install: crds-only).
CONFIG_FILE = "kubernetes:yaml/v2:ConfigFile"
# Objects the program creates whose schema Plinth does not vendor, and why; validate_rendering
# checks every other object.
UNVALIDATED_KINDS = {
    ("karpenter.sh", "NodePool"): "no Karpenter CRD schema is vendored; Plinth's tests check its fields one by one",
}


@dataclass(frozen=True)
class CapturedResource:
    type: str               # Pulumi type token, e.g. kubernetes:core/v1:Namespace
    name: str               # Pulumi logical name
    inputs: dict[str, Any]  # what the provider would receive (camelCase); secret values still wrapped
    # Logical names of the resources this one waits for (depends_on and inputs taken from them).
    depends_on: tuple[str, ...] = ()
    read: bool = False      # an existing object the program only reads (Resource.get), never creates

    @property
    def is_kubernetes_object(self) -> bool:
        return self.type.startswith("kubernetes:") and self.type != HELM_RELEASE and "apiVersion" in self.inputs

    def object(self, redact: bool = True) -> dict[str, Any]:
        """The Kubernetes object (apiVersion, kind, metadata, spec/data/rules, ...) as it would be
        sent; secret values replaced by REDACTED unless `redact` is False."""
        return _plain(self.inputs, redact)

    def release(self) -> dict[str, Any]:
        """A Helm release: chart, repository, version, namespace, values."""
        inputs = _plain(self.inputs, redact=True)
        return {
            "name": inputs.get("name", self.name),
            "chart": inputs["chart"],
            "repo": (inputs.get("repositoryOpts") or {}).get("repo"),
            "version": inputs.get("version"),
            "namespace": inputs.get("namespace"),
            "values": inputs.get("values") or {},
            **({"postrender": _shown_path(inputs["postrender"])} if inputs.get("postrender") else {}),
        }


@dataclass
class Rendering:
    stack: str
    resources: list[CapturedResource]
    outputs: dict[str, Any] = field(default_factory=dict)
    stack_config: StackConfig | None = None   # what was rendered (render_stack sets it)

    def objects(self, redact: bool = True) -> list[dict[str, Any]]:
        """The Kubernetes objects in apply order (see ordered_objects)."""
        return ordered_objects([resource.object(redact) for resource in self.resources if resource.is_kubernetes_object])

    def releases(self) -> list[dict[str, Any]]:
        releases = [resource.release() for resource in self.resources if resource.type == HELM_RELEASE]
        return sorted(releases, key=lambda release: (release["namespace"] or "", release["name"]))

    def manifest_files(self) -> list[str]:
        """Manifest files the provider applies as they are: the engines' vendored CRDs (engines.install: crds-only)."""
        root = Path(__file__).resolve().parents[2]
        files = [Path(resource.inputs["file"]) for resource in self.resources if resource.type == CONFIG_FILE]
        return sorted(str(path.relative_to(root)) if path.is_relative_to(root) else str(path) for path in files)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects() if obj["kind"] == kind]


def _shown_path(path: str) -> str:
    """A file of this checkout relative to it, so renderings read the same on every checkout."""
    root = Path(__file__).resolve().parents[2]
    return str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else path


def rendering_yaml(rendering: Rendering) -> str:
    """The objects as one YAML stream (kubectl apply -f), Helm releases as a comment header."""
    objects, releases, files = rendering.objects(), rendering.releases(), rendering.manifest_files()
    header = [f"# stack {rendering.stack}: {len(objects)} Kubernetes objects, {len(releases)} Helm releases (rendered by plinth stack render)"]
    if files and not releases:
        header.append(
            f"# engines: CRDs only (engines.install: crds-only): the engines' CustomResourceDefinitions from {len(files)} vendored files, "
            "no Helm charts, no GPU driver; nothing acts on their objects until the engines' controllers are installed another way"
        )
    header.extend(f"# crd file {path}" for path in files)
    for release in releases:
        source = release["repo"] or "oci"
        header.append(
            f"# helm release {release['name']}: chart {release['chart']} {release['version']} ({source}) "
            f"in namespace {release['namespace']}, values {json.dumps(release['values'], sort_keys=True)}"
            + (f", post-rendered by {release['postrender']}" if release.get("postrender") else "")
        )
    return "\n".join(header) + "\n" + yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


def rendering_json(rendering: Rendering) -> str:
    return json.dumps({"stack": rendering.stack, "helmReleases": rendering.releases(), "manifestFiles": rendering.manifest_files(), "objects": rendering.objects()}, indent=2)


def render_stack(stack: Stack | str, secrets: Mapping[str, str] | None = None) -> Rendering:
    """Run the Pulumi program for `stack` under mocks. Secret config values are `secrets[key]`
    if given (tests), else a placeholder: the stack file holds only their ciphertext."""
    stack = load_stack(stack) if isinstance(stack, str) else stack
    references: dict[str, dict[str, Any]] = {}
    if stack.role == "team":
        platform = stack.platform_stack()
        references[platform.name] = render_stack(platform).outputs
    config, secret_keys = pulumi_config(stack, secrets or {})
    rendering = evaluate(stack.name, program_path(stack.project_root), config, secret_keys, references)
    rendering.stack_config = stack.config
    return rendering


def pulumi_config(stack: Stack, secrets: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The stack file's config as Pulumi hands it to a program: every value a string (structured
    ones as JSON), secret values decrypted and listed as secret."""
    document = yaml.safe_load(stack.file.read_text()) or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            name = str(key).partition(":")[2]
            config[key] = secrets.get(name, REDACTED)
            secret_keys.append(key)
        else:
            config[key] = value if isinstance(value, str) else json.dumps(value)
    # A secret `up` needs but the file does not set yet renders as the placeholder (its value
    # would be redacted anyway); `pulumi up` refuses to run without it.
    for name in stack.config.needed_secret_keys:
        if f"plinth:{name}" not in config:
            config[f"plinth:{name}"] = secrets.get(name, REDACTED)
            secret_keys.append(f"plinth:{name}")
    return config, secret_keys


def program_path(project_root: Path) -> Path:
    """infra/__main__.py of the project, or of the checkout this package runs from."""
    for root in (project_root, Path(__file__).resolve().parents[2]):
        if (root / "infra" / "__main__.py").is_file():
            return root / "infra" / "__main__.py"
    raise PlinthError(f"no Pulumi program at {project_root / 'infra' / '__main__.py'}")


def evaluate(
    stack_name: str,
    program: Path,
    config: Mapping[str, str],
    secret_keys: list[str],
    references: Mapping[str, Mapping[str, Any]],
) -> Rendering:
    """Run `program` once as stack `stack_name` under mocks that record every resource."""
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    captured: list[CapturedResource] = []
    dependencies: dict[str, tuple[str, ...]] = {}

    class Capture(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            if args.typ == "pulumi:pulumi:StackReference":
                referenced = args.inputs["name"].rsplit("/", 1)[-1]
                if referenced not in references:
                    raise PlinthError(f"stack {stack_name} references stack {referenced!r}, which was not rendered")
                return args.name, {"name": args.inputs["name"], "outputs": dict(references[referenced]), "secretOutputNames": []}
            read = bool(args.resource_id) and not args.inputs
            captured.append(CapturedResource(args.typ, args.name, args.inputs, dependencies.get(args.name, ()), read))
            # The "created" resource reports its inputs back as its outputs (metadata.name, ...).
            return f"{args.name}-id", args.inputs

        def call(self, args: pulumi.runtime.MockCallArgs):
            return {}

    # Pulumi's mocks run on the thread's current event loop; a caller that used asyncio.run
    # before (a server, a client) leaves the thread without one.
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    settings.reset_options()
    pulumi.runtime.set_all_config(dict(config), list(secret_keys))
    pulumi.runtime.set_mocks(Capture(), project=PROJECT, stack=stack_name, preview=False, organization=ORGANIZATION)
    # The mocks hand new_resource no dependencies; the monitor's request has them (as URNs).
    monitor = settings.get_monitor()
    register = monitor.RegisterResource

    def register_recording(request):
        dependencies[request.name] = tuple(sorted(urn.rsplit("::", 1)[-1] for urn in request.dependencies))
        return register(request)

    monitor.RegisterResource = register_recording
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(program), run_name="__main__")))
        outputs = {}
        for key, value in settings.get_root_resource().outputs.items():
            output = pulumi.Output.from_input(value)
            resolved = _plain(_sync_await(output.future()), redact=False)
            outputs[key] = _redact(resolved) if _sync_await(output.is_secret()) else resolved
    except pulumi.RunError as exc:
        raise PlinthError(f"stack {stack_name}: {exc}") from None
    finally:
        settings.reset_options()
    return Rendering(stack_name, captured, outputs)


def validate_rendering(rendering: Rendering) -> list[tuple[str, str]]:
    """Validate every captured object against its schema (Kubernetes OpenAPI or vendored CRD);
    returns the (object, reason) pairs that have no schema to check against."""
    from platform_cli.render.validate import describe, validate_object

    skipped = []
    for obj in rendering.objects():
        group = obj["apiVersion"].rpartition("/")[0]
        reason = UNVALIDATED_KINDS.get((group, obj["kind"]))
        if reason:
            skipped.append((describe(obj), reason))
        else:
            validate_object(obj)
    return skipped


# Apply order, as Helm installs: what others live in or refer to comes first.
KIND_ORDER = [
    "Namespace", "PriorityClass", "NodePool", "ResourceFlavor", "ClusterQueue", "Queue", "ResourceQuota", "LimitRange",
    "ServiceAccount", "Secret", "ConfigMap", "Role", "RoleBinding", "NetworkPolicy", "LocalQueue", "Service",
    "StatefulSet", "Job",
]


def ordered_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects in apply order with kubectl's key layout (apiVersion, kind, metadata, then the
    rest, nested keys sorted), so the same stack always renders to the same bytes."""

    def key(obj: dict[str, Any]):
        kind = obj["kind"]
        rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
        meta = obj.get("metadata") or {}
        return rank, kind, meta.get("namespace") or "", meta.get("name") or ""

    def layout(obj: dict[str, Any]) -> dict[str, Any]:
        head = {k: _sorted(obj[k]) for k in ("apiVersion", "kind", "metadata") if k in obj}
        return head | {k: _sorted(obj[k]) for k in sorted(obj) if k not in head}

    return [layout(obj) for obj in sorted(objects, key=key)]


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _plain(value: Any, redact: bool) -> Any:
    """Inputs as plain data: Pulumi's secret wrappers opened (or their strings redacted), and
    whole-number floats (protobuf has only doubles) back to ints."""
    from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

    if is_rpc_secret(value):
        inner = unwrap_rpc_secret(value)
        return _redact(_plain(inner, redact=False)) if redact else _plain(inner, redact=False)
    if isinstance(value, dict):
        return {key: _plain(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, redact) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return REDACTED if isinstance(value, str) else value
