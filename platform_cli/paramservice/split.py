"""A trained model cut in two at its embedding lookups: the tables, and a dense model that takes
looked-up rows instead of holding them.

    parts = split_model(model_dir)          # TensorFlow, from the version's SavedModel
    parts.tables                            # {"embedding/embeddings": float32 [rows, dim], ...}
    parts.save(directory)                   # keys.tflite, dense.tflite, their SavedModels, split.json

The model's serving signature is frozen (variables become constants, nested functions inlined)
and every gather whose table is one of the model's variables becomes a cut point. Two programs
come out of the frozen graph, both pruned by TensorFlow itself, so they are the model's own
arithmetic, op for op:
- keys: the model inputs -> the row ids each cut gathers (for the CTR model, `cat + offsets`);
- dense: the model inputs and each cut's gathered rows -> the probability.
Neither holds a table, and both convert to TFLite with built-in ops like the whole model does.
The serving side (paramservice/predictor.py) runs keys, fetches the rows from the parameter
store in one lookup, and runs dense.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from platform_cli import tflite
from platform_cli.errors import PlinthError

if TYPE_CHECKING:
    import numpy as np

SPLIT_FILE = "split.json"
KEYS_MODEL = "keys.tflite"
DENSE_MODEL = "dense.tflite"
KEYS_SAVED_MODEL = "keys"
DENSE_SAVED_MODEL = "dense"
# The dense model's input for a cut's rows: rows_0, rows_1, ... (in the order of split.json).
ROWS_INPUT = "rows_{}"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Edges of a SavedModel's object graph that list variables again under generic names.
_COLLECTIONS = {"variables", "trainable_variables", "non_trainable_variables", "keras_api"}


@dataclass
class Cut:
    """One gather of a table in the serving graph: `keys` name its ids output, `rows` its input
    in the dense model; `shape` is the gathered rows' shape with -1 for unknown dimensions."""

    table: str
    keys: str
    rows: str
    shape: list[int]


@dataclass
class Split:
    inputs: list[str]  # the serving signature's input names (cat, num, tokens ...)
    tables: dict[str, np.ndarray]  # table name -> float32 [rows, dim]
    cuts: list[Cut]
    keys_tflite: bytes = b""
    dense_tflite: bytes = b""
    saved_models: dict[str, object] = field(default_factory=dict)  # keys/dense -> tf.Module to save

    def manifest(self) -> dict:
        return {
            "inputs": self.inputs,
            "tables": {name: {"rows": int(table.shape[0]), "dim": int(table.shape[1])} for name, table in self.tables.items()},
            "cuts": [cut.__dict__ for cut in self.cuts],
        }

    def save(self, directory: Path) -> None:
        """The two programs (TFLite and SavedModel) and split.json into directory; no table."""
        import tensorflow as tf

        directory = Path(directory)
        for name, module in self.saved_models.items():
            tf.saved_model.save(module, str(directory / name), signatures={tflite.SIGNATURE: module.serve})
        (directory / KEYS_MODEL).write_bytes(self.keys_tflite)
        (directory / DENSE_MODEL).write_bytes(self.dense_tflite)
        (directory / SPLIT_FILE).write_text(json.dumps(self.manifest(), indent=2) + "\n")


def split_model(model_dir: str | os.PathLike[str]) -> Split:
    """Cut the SavedModel's serving signature at its table lookups. PlinthError when the model
    has no table to cut, or when a part does not convert to TFLite built-in ops."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(model_dir))
    signature = loaded.signatures[tflite.SIGNATURE]
    input_names = sorted(signature.structured_input_signature[1])
    output_name = tflite.OUTPUT
    # Tables are recognised by value: the frozen graph's constants that hold a variable's values,
    # named by the variable's path in the SavedModel's checkpoint (embedding/embeddings), which
    # is the same for every version of a model.
    reader = tf.train.load_checkpoint(str(Path(model_dir) / "variables" / "variables"))
    paths = _variable_paths(reader)
    variables = [(paths.get(key, key.removesuffix(_VALUE_SUFFIX)), reader.get_tensor(key))
                 for key, shape in sorted(reader.get_variable_to_shape_map().items()) if key.endswith(_VALUE_SUFFIX) and len(shape) >= 2]
    frozen = convert_variables_to_constants_v2(signature)
    graph_def = frozen.graph.as_graph_def()
    nodes = {node.name: node for node in graph_def.node}

    def source(name: str):
        """The node a tensor name comes from, through Identity chains."""
        node = nodes[name.split(":")[0].lstrip("^")]
        while node.op == "Identity":
            node = nodes[node.input[0].split(":")[0]]
        return node

    def table_of(node) -> tuple[str, np.ndarray] | None:
        if node.op != "Const":
            return None
        value = tf.make_ndarray(node.attr["value"].tensor)
        if value.ndim < 2:
            return None
        for name, variable in variables:
            if variable.shape == value.shape and variable.dtype == value.dtype and np.array_equal(variable, value):
                return name, variable
        return None

    tables: dict[str, np.ndarray] = {}
    gathers = []  # (gather node, table name)
    for node in graph_def.node:
        if node.op not in ("GatherV2", "ResourceGather", "Gather"):
            continue
        found = table_of(source(node.input[0]))
        if found is None:
            continue
        name, value = found
        tables.setdefault(name, value.reshape(value.shape[0], -1).astype(np.float32, copy=False))
        gathers.append((node, name))
    if not gathers:
        raise PlinthError(f"the model in {model_dir} gathers from no variable table",
                          "serve it as a whole: the parameter service holds embedding tables, and this model has none")

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    graph = wrapped.graph
    # The frozen function keeps the signature's placeholders (named after its inputs) and its
    # outputs in the signature's (sorted) order.
    inputs = {name: graph.get_tensor_by_name(f"{name}:0") for name in input_names}
    output = graph.get_tensor_by_name(frozen.outputs[sorted(signature.structured_outputs).index(output_name)].name)
    id_tensors = [graph.get_tensor_by_name(node.input[1] if ":" in node.input[1] else f"{node.input[1]}:0") for node, _ in gathers]
    row_tensors = [graph.get_tensor_by_name(f"{node.name}:0") for node, _ in gathers]

    cuts = [Cut(table=name, keys=f"keys_{i}", rows=ROWS_INPUT.format(i), shape=_shape(row_tensors[i]))
            for i, (_, name) in enumerate(gathers)]
    keys = wrapped.prune(feeds=[inputs[n] for n in input_names], fetches={cut.keys: tf.cast(t, tf.int64) if t.dtype != tf.int64 else t
                                                                             for cut, t in zip(cuts, id_tensors)})
    dense = wrapped.prune(feeds=[inputs[n] for n in input_names] + row_tensors, fetches={output_name: output})

    input_specs = [tf.TensorSpec(inputs[n].shape, inputs[n].dtype, name=n) for n in input_names]
    row_specs = [tf.TensorSpec(t.shape, tf.float32, name=cut.rows) for cut, t in zip(cuts, row_tensors)]
    modules = {KEYS_SAVED_MODEL: _module(tf, keys, input_specs), DENSE_SAVED_MODEL: _module(tf, dense, input_specs + row_specs)}
    split = Split(inputs=input_names, tables=tables, cuts=cuts, saved_models=modules)
    split.keys_tflite = _convert(tf, modules[KEYS_SAVED_MODEL], "keys")
    split.dense_tflite = _convert(tf, modules[DENSE_SAVED_MODEL], "dense")
    return split


def _variable_paths(reader) -> dict[str, str]:
    """Checkpoint key -> the variable's attribute path from the saved object (embedding/embeddings
    for a Keras layer's table), the first path found breadth-first past generic collections."""
    from collections import deque

    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    paths, seen, queue = {}, {0}, deque([(0, "")])
    while queue:
        node_id, path = queue.popleft()
        for attribute in graph.nodes[node_id].attributes:
            if attribute.name == "VARIABLE_VALUE" and path:
                paths.setdefault(attribute.checkpoint_key, path)
        for child in graph.nodes[node_id].children:
            if child.local_name not in _COLLECTIONS and child.node_id not in seen:
                seen.add(child.node_id)
                queue.append((child.node_id, f"{path}/{child.local_name}".lstrip("/")))
    return paths


def _shape(tensor) -> list[int]:
    return [-1 if d is None else int(d) for d in tensor.shape.as_list()]


def _module(tf, function, specs):
    """A tf.Module whose `serve` calls the pruned function with named inputs (a SavedModel signature)."""
    module = tf.Module()
    module.function = function

    @tf.function(input_signature=specs)
    def serve(*args):
        return function(*args)

    module.serve = serve
    return module


def _convert(tf, module, part: str) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"plinth-{part}-") as directory:
        tf.saved_model.save(module, directory, signatures={tflite.SIGNATURE: module.serve})
        try:
            return tflite.convert(directory)
        except tflite.NotConvertible as e:
            raise PlinthError(f"the {part} part of the model does not convert to TFLite built-in ops: it uses {', '.join(e.ops)}",
                              "serve the model as a whole") from e
