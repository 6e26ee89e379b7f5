"""A version served from the parameter service: the dense model in process, its embedding rows
fetched from the parameter store on every call.

    call = ParameterServiceModel.load(split_dir, "sqlite:///.../parameters.sqlite", home)
    call({"cat": ..., "num": ...})    # float32 [N] probabilities, one store lookup per call

A call runs the keys program (the row ids each cut of the model gathers), takes every table's
unique ids of the whole batch (a micro-batch of the version server: one lookup for all its
requests), fetches them in one round trip, spreads them back to each cut's shape and runs the
dense program. Nothing is cached between calls, so rows updated in the store are served on the
next call; the version's rows are keyed by its model and version (split.json), so two versions
in one store never read each other's rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli import tflite
from platform_cli.paramservice.split import DENSE_MODEL, KEYS_MODEL, SPLIT_FILE
from platform_cli.paramservice.store import ParameterStore, open_store

if TYPE_CHECKING:
    import numpy as np


class ParameterServiceModel:
    def __init__(self, manifest: dict, keys, dense, store: ParameterStore):
        self.model = manifest["model"]
        self.version = int(manifest["version"])
        self.inputs = manifest["inputs"]
        self.cuts = manifest["cuts"]
        self.tables = list(dict.fromkeys(cut["table"] for cut in self.cuts))
        self.store = store
        self._keys = keys
        self._dense = dense

    @classmethod
    def load(cls, split_dir: Path, store_url: str, home: Path | None = None) -> ParameterServiceModel:
        import tensorflow as tf

        split_dir = Path(split_dir)
        manifest = json.loads((split_dir / SPLIT_FILE).read_text())

        def runner(name: str):
            # One thread: the server's event loop is the other half of every request.
            loaded = tf.lite.Interpreter(model_path=str(split_dir / name), num_threads=1)
            run = loaded.get_signature_runner(tflite.SIGNATURE)
            run.interpreter = loaded  # noqa: keeps it referenced
            return run

        return cls(manifest, runner(KEYS_MODEL), runner(DENSE_MODEL), open_store(store_url, home))

    def row_ids(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The ids of the rows of each table these model inputs read."""
        import numpy as np

        keys = self._keys(**{name: inputs[name] for name in self.inputs})
        return {table: np.unique(np.concatenate([keys[c["keys"]].ravel() for c in self.cuts if c["table"] == table])) for table in self.tables}

    def lookup(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The dense model's row inputs for these model inputs: one store lookup."""
        import numpy as np

        keys = self._keys(**{name: inputs[name] for name in self.inputs})
        wanted = {}
        for table in self.tables:
            ids = np.concatenate([keys[cut["keys"]].ravel() for cut in self.cuts if cut["table"] == table])
            wanted[table] = np.unique(ids, return_inverse=True)
        found = self.store.lookup(self.model, self.version, {table: unique for table, (unique, _) in wanted.items()})
        rows, offsets = {}, dict.fromkeys(self.tables, 0)
        for cut in self.cuts:
            table, ids = cut["table"], keys[cut["keys"]]
            inverse = wanted[table][1][offsets[table]:offsets[table] + ids.size]
            offsets[table] += ids.size
            rows[cut["rows"]] = found[table][inverse].reshape(*ids.shape, -1)
        return rows

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._dense(**{name: inputs[name] for name in self.inputs}, **self.lookup(inputs))[tflite.OUTPUT]

