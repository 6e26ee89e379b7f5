"""`plinth model params export`: a registered version's embedding tables into a parameter store,
and its dense part kept with the version.

    result = export_parameters(stack, "ctr", 3, "sqlite", progress=print)

1. the version's SavedModel is cut at its table lookups (paramservice/split.py);
2. the tables are written to the store under the model and version (a version exported again
   replaces its own rows and nothing else);
3. the dense part (keys and dense programs, TFLite and SavedModel, split.json and the feature
   spec) is written into a directory renamed into place (<local.home>/params/NAME/vVERSION
   unless told otherwise) and kept with the version as its `parameters` export;
4. the monolithic SavedModel and the dense part with rows from the store predict the same
   seeded probe rows; the largest difference is kept with the export, and one beyond
   TOLERANCE fails the export.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli.atomic import staged_dir
from platform_cli.errors import PlinthError
from platform_cli.features import SPEC_FILE
from platform_cli.paramservice.split import SPLIT_FILE
from platform_cli.paramservice.store import PASSWORD_ENV, check_url, open_store, reachable, resolve

if TYPE_CHECKING:
    from platform_cli.spec.stack import Stack

EXPORT_KEY = "parameters"
PROBE_ROWS = 256
TOLERANCE = 1e-6


def default_dir(stack: Stack, name: str, version: int) -> Path:
    return stack.home / "params" / name / f"v{version}"


def export_parameters(
    stack: Stack,
    name: str,
    version: int,
    store_url: str = "sqlite",
    export_dir: Path | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Export one version to a parameter store; returns what the command prints."""
    check_url(store_url)
    from platform_cli.registry import ModelRegistry

    registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
    found = registry.get(name, version)
    model_dir = registry.model_dir(name, found.version)
    if not (model_dir / SPEC_FILE).is_file():
        raise PlinthError(f"model {name} version {found.version} has no {SPEC_FILE}", "export a model trained by Plinth's pipeline")
    from platform_cli.paramservice.split import split_model

    progress(f"cutting {name} v{found.version} at its embedding lookups")
    split = split_model(model_dir)
    shown_url = resolve(store_url, stack.home)  # what servers read: the cluster's own address, not a port forward's
    with reachable(shown_url, stack) as url:
        store = open_store(url)
        try:
            rows = sum(int(t.shape[0]) for t in split.tables.values())
            progress(f"writing {rows} rows of {len(split.tables)} tables to {shown_url}")
            store.write(name, found.version, split.tables)
            directory = Path(export_dir or default_dir(stack, name, found.version))
            progress(f"writing the dense part to {stack.shown(directory)}")
            with staged_dir(directory) as staging:
                split.save(staging)
                manifest = json.loads((staging / SPLIT_FILE).read_text()) | {"model": name, "version": found.version}
                (staging / SPLIT_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
                shutil.copyfile(model_dir / SPEC_FILE, staging / SPEC_FILE)
            progress(f"comparing with the whole model on {PROBE_ROWS} probe rows")
            difference = compare(model_dir, directory, url, stack.home)
        finally:
            store.close()
    if difference > TOLERANCE:
        raise PlinthError(f"the dense part with rows from {shown_url} differs from model {name} version {found.version} by {difference:.2e}",
                          "serve the model as a whole")
    summary = {
        "store": shown_url,
        "tables": {t: {"rows": int(v.shape[0]), "dim": int(v.shape[1])} for t, v in sorted(split.tables.items())},
        "parameters": int(sum(v.size for v in split.tables.values())),
        "max_abs_diff": difference,
    }
    progress(f"registering the dense part with {name} v{found.version}")
    registry.record_export(name, found.version, EXPORT_KEY, directory, summary)
    return {"model": name, "version": found.version, **summary, "rows": rows, "directory": stack.shown(directory)}


def compare(model_dir: Path, split_dir: Path, store_url: str, home: Path) -> float:
    """Largest |Δp| between the whole SavedModel and the dense part with rows from the store."""
    import numpy as np

    from platform_cli import tflite
    from platform_cli.features import FeatureSpec
    from platform_cli.paramservice.predictor import ParameterServiceModel
    from platform_cli.serving.server import SavedModelPredictor

    whole = SavedModelPredictor("whole", model_dir, tensor_inputs=True, runtime="savedmodel")
    whole.load()
    probe = tflite.probe_inputs(FeatureSpec.load(model_dir / SPEC_FILE), PROBE_ROWS)
    served = ParameterServiceModel.load(split_dir, store_url, home)
    try:
        return float(np.max(np.abs(served(probe).astype(np.float64) - whole.probabilities(probe))))
    finally:
        served.store.close()


def serving_source(registry, stack: Stack, name: str, version: int, store_url: str) -> tuple[Path, str]:
    """(the version's dense part, the store URL its server reads) for serving from the parameter
    service on this machine; PlinthError when the version was not exported there."""
    url = served_store(registry, stack, name, version, store_url)
    return registry.export_dir(name, version, EXPORT_KEY), url


def served_store(registry, stack: Stack, name: str, version: int, store_url: str) -> str:
    """The store URL a server of the version reads (a cluster's pods included), checked from
    this machine: the version has a dense part and the store holds its rows."""
    found = registry.get(name, version)
    url = resolve(store_url, stack.home)
    if EXPORT_KEY not in found.exports:
        raise PlinthError(f"model {name} version {found.version} has no dense part for the parameter service",
                          f"export it first: plinth model params export {name} {found.version} --store {store_url}")
    check_rows(stack, name, found.version, url)
    return url


def check_rows(stack: Stack, name: str, version: int, url: str) -> None:
    """PlinthError unless the store at `url` (reached from this machine) holds the version's rows."""
    with reachable(url, stack) as here:
        store = open_store(here)
        try:
            exported = store.tables(name)
        except Exception as e:  # the store is down or refuses us: say which, before a server starts
            raise PlinthError(f"parameters: cannot read {url}: {' '.join(str(e).split())[:200]}",
                              f"check the store (and {PASSWORD_ENV} for Redis)") from e
        finally:
            store.close()
    if not any(t["version"] == version for t in exported):
        raise PlinthError(f"{url} has no rows of model {name} version {version}",
                          f"export them: plinth model params export {name} {version} --store {url}")
