"""The Open Inference Protocol (KServe's v2, Triton's HTTP/REST API) for a model of raw fields (pure).

What a v2 client sees of a Plinth model, and how its requests become the rows the v1 form
carries, so both protocols go through one transform, one batcher and one set of metrics:

- every raw field of the model's feature spec is a named input tensor of one dimension, one
  row per element: BYTES for categorical and text fields (a categorical field also takes INT64
  or INT32, as the v1 form takes integers), FP32 for numeric ones (FP64, INT64 and INT32 are
  taken too); [N, 1] is taken for [N]. An optional field may be left out. The values are
  checked where a v1 request's are, by the feature transform (a 400 naming the field).
- the answer is one output, `probability`, FP32 [N].
- the binary tensor extension (`Inference-Header-Content-Length`: a JSON header, then each
  input's raw bytes; BYTES elements as a 4-byte little-endian length and the bytes), which
  Triton's and KServe's clients use by default, both ways: outputs come back binary when the
  request asks (`binary_data_output`, or `binary_data` on the output).

    signature = Signature(spec)                         # once per model
    route = parse_path(path)                            # what a /v2/... path asks for, or None
    request, rows = signature.read(body, header_length) # the request and its rows (Columns), or InvalidInput
    body, header_length = infer_response(model, version, request, probabilities)

A well-formed JSON request is decoded and checked against the model's inputs in one pass of C
(msgspec, with a type per input): what is left in Python is a few comparisons per input, so a
v2 request costs about what a v1 request does. Anything else (the binary extension, a nested
[N, 1] list, a mistake) takes the general path, parse_request + Signature.rows, which also
words the complaint.

InvalidInput (serving/inputs.py) is the client's mistake: a 400 naming the input and the fix.
"""

from __future__ import annotations

import operator
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from platform_cli.features import Columns
from platform_cli.serving.inputs import InvalidInput

if TYPE_CHECKING:
    import numpy as np

    from platform_cli.features import FeatureSpec

# The header both clients send with a binary body (and read on a binary answer).
HEADER_LENGTH = "inference-header-content-length"
OUTPUT = "probability"
PROTOCOL_VERSION = "2"

# Datatypes a field of each kind takes; the first is the one the metadata declares.
_CATEGORICAL = ("BYTES", "INT64", "INT32")
_NUMERIC = ("FP32", "FP64", "INT64", "INT32")
_TEXT = ("BYTES",)
# numpy dtypes (little-endian, as the protocol's binary form) of the fixed-size datatypes.
_FIXED = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4"}
_ABSENT = object()
# What the typed decoder's inputs hold (see _typed_decoder).
_INPUT, _DATA, _SHAPE = operator.attrgetter("input"), operator.attrgetter("data"), operator.attrgetter("shape")


@dataclass(frozen=True)
class Route:
    """What a /v2 path asks for. kind: live | ready | server | metadata | model-ready | infer;
    model and version for the model routes (version None: the model as a whole)."""

    kind: str
    model: str | None = None
    version: str | None = None


def parse_path(path: str) -> Route | None:
    """The route of a /v2 path, None for a path the protocol does not have."""
    parts = path.rstrip("/").split("/")[1:]
    if not parts or parts[0] != "v2":
        return None
    if parts == ["v2"]:
        return Route("server")
    if parts in (["v2", "health", "live"], ["v2", "health", "ready"]):
        return Route("live" if parts[2] == "live" else "ready")
    if len(parts) < 3 or parts[1] != "models" or not parts[2]:
        return None
    model, rest, version = parts[2], parts[3:], None
    if rest[:1] == ["versions"]:
        if len(rest) < 2 or not rest[1]:
            return None
        version, rest = rest[1], rest[2:]
    if not rest:
        return Route("metadata", model, version)
    if rest in (["ready"], ["infer"]):
        return Route("model-ready" if rest == ["ready"] else "infer", model, version)
    return None


class Signature:
    """A model's inputs as the protocol sees them, worked out once from its feature spec:
    `metadata()` lists them, `rows(inputs)` checks a request's tensors against them."""

    def __init__(self, spec: FeatureSpec):
        fields = [(f, _CATEGORICAL, "categorical") for f in spec.categorical] + [(f, _NUMERIC, "numeric") for f in spec.numeric]
        fields += [(f, _TEXT, "text") for f in spec.text]
        self.fields = fields
        self.kinds = {f.name: (types, kind) for f, types, kind in fields}
        self.required = [f.name for f, _, _ in fields if f.required]
        self._required = frozenset(self.required)
        import msgspec

        self._decoder = _typed_decoder(fields)
        self._decode_error = msgspec.DecodeError

    def read(self, body: bytes, header_length: int | None = None) -> tuple[InferRequest, Columns]:
        """The infer request in `body` and the rows its inputs hold (InvalidInput: its 400)."""
        if header_length is None:
            try:
                typed = self._decoder.decode(body)
            except self._decode_error:
                pass  # the general path says what is wrong, or takes what the typed one does not
            else:
                columns = self._columns(typed.inputs)
                if columns is not None:
                    binary = (typed.parameters is not None or typed.outputs is not None) and _binary_output(
                        {"parameters": typed.parameters, "outputs": typed.outputs})
                    return InferRequest(None if typed.id is None else str(typed.id), [], binary), columns
        request = parse_request(body, header_length)
        return request, self.rows(request)

    def _columns(self, inputs: list) -> Columns | None:
        """The typed inputs as columns when their shapes are one element per row and every
        required input is there once; None for the general path to judge. (map and attrgetter
        keep the per-input work in C: this runs for every request.)"""
        data = list(map(_DATA, inputs))
        rows = len(data[0]) if data else 0
        columns = dict(zip(map(_INPUT, inputs), data))
        if (not rows or len(columns) != len(data) or not self._required <= columns.keys()
                or list(map(len, data)).count(rows) != len(data) or list(map(_SHAPE, inputs)).count([rows]) != len(data)):
            return None
        return Columns(columns, rows)

    def metadata(self, model: str, versions: list[int], platform: str) -> dict:
        inputs = [{"name": f.name, "datatype": types[0], "shape": [-1], "parameters": {"required": f.required, "accepts": list(types)}}
                  for f, types, _ in self.fields]
        return {"name": model, "versions": [str(v) for v in versions], "platform": platform,
                "inputs": inputs, "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1]}]}

    def rows(self, request: InferRequest) -> Columns:
        """The rows the request's inputs hold, column by column; InvalidInput names the input
        and what is wrong with it. The values themselves
        are checked where a v1 request's are, by the feature transform (its 400 names the
        field); this runs for every input of every request, so the common case is a few
        lookups and comparisons, and the precise complaint is worked out only when one fails."""
        kinds = self.kinds
        columns: dict[str, list] = {}
        rows = -1
        for i, tensor in enumerate(request.tensors):
            try:
                name, datatype, shape, data = tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"]
                types, kind = kinds[name]
                size = len(data)
            except (TypeError, KeyError):
                raise self._malformed(i, tensor) from None
            if datatype not in types:
                if type(datatype) is not str:
                    raise InvalidInput(f"input {name!r} needs a datatype")
                raise InvalidInput(f"input {name!r} is a {kind} field: datatype {' or '.join(types)}, not {datatype}")
            if size and type(data[0]) is list:
                data = _flat(data)
                size = len(data)
            if shape != [size] and shape != [size, 1]:
                raise InvalidInput(_shape_complaint(name, shape, size))
            if name in columns:
                raise InvalidInput(f"input {name!r} is given twice")
            if rows < 0:
                rows = size
            elif size != rows:
                raise InvalidInput(f"input {name!r} has {size} rows, the inputs before it {rows}; every input needs one element per row")
            columns[name] = data
        for name in self.required:
            if name not in columns:
                raise InvalidInput(f"missing input {name!r} (one element per row); GET the model's metadata for its inputs")
        if rows <= 0:
            raise InvalidInput("the inputs hold no rows")
        return Columns(columns, rows)

    def _malformed(self, i: int, tensor: Any) -> InvalidInput:
        """What is wrong with an input object that lacks a field or has one of the wrong kind."""
        if type(tensor) is not dict or type(name := tensor.get("name")) is not str:
            return InvalidInput(f"input {i} must be an object with a name")
        if name not in self.kinds:
            return InvalidInput(f"unknown input {name!r}; the model's inputs are {', '.join(self.kinds)}")
        if type(tensor.get("datatype")) is not str:
            return InvalidInput(f"input {name!r} needs a datatype")
        if type(tensor.get("shape")) is not list or not tensor["shape"]:
            return InvalidInput(f"input {name!r} needs a shape: a list of sizes, e.g. [N] for N rows")
        if "data" not in tensor:
            return InvalidInput(f"input {name!r} has neither data nor parameters.binary_data_size")
        return InvalidInput(f"input {name!r}: data must be a list of elements, one per row")


def _typed_decoder(fields: list) -> Any:
    """A msgspec decoder for an infer request whose inputs are this model's: each input a type
    of its own, told apart by its name, that takes only the datatypes its field does. Element
    values stay as JSON gives them: the feature transform checks them, as it does v1's."""
    from typing import Literal, Optional, Union

    import msgspec

    inputs = [msgspec.defstruct(f"Input_{i}", [("datatype", Literal[types]), ("shape", list[int]), ("data", list[Any]),
                                               ("parameters", Optional[dict], None)],
                                tag_field="name", tag=f.name, namespace={"input": f.name}, forbid_unknown_fields=False)
              for i, (f, types, _) in enumerate(fields)]
    request = msgspec.defstruct("InferRequestBody", [("inputs", list[Union[tuple(inputs)]]), ("id", Any, None),
                                                     ("parameters", Optional[dict], None), ("outputs", Optional[list], None)])
    return msgspec.json.Decoder(request)


def _shape_complaint(name: str, shape: Any, size: int) -> str:
    if type(shape) is not list or not shape:
        return f"input {name!r} needs a shape: a list of sizes, e.g. [N] for N rows"
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        return f"input {name!r}: shape {shape} is not [N] (or [N, 1]), one element per row"
    return f"input {name!r}: shape {shape} says {shape[0]} elements, the data has {size}"


@dataclass
class InferRequest:
    id: str | None
    # The request's input objects as sent ({"name", "datatype", "shape", "data"}), a binary
    # input's elements read into its "data"; Signature.rows checks them, in one pass.
    tensors: list[Any] = field(default_factory=list)
    binary_output: bool = False


def parse_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """A v2 infer request from its body (header_length: the JSON part's length for a binary body)."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH} is {header_length} but the body has {len(body)} bytes")
    header = body if header_length is None else body[:header_length]
    try:
        payload = orjson.loads(header)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the request body is not JSON: {e}") from e
    if type(payload) is not dict or type(tensors := payload.get("inputs")) is not list or not tensors:
        raise InvalidInput('expected a JSON object {"inputs": [{"name", "datatype", "shape", "data"}, ...]}')
    request_id = payload.get("id")
    request = InferRequest(None if request_id is None else str(request_id), tensors, _binary_output(payload))
    if header_length is not None:
        _read_binary(tensors, memoryview(body)[header_length:])
    return request


def _read_binary(tensors: list, binary: memoryview) -> None:
    """Each binary input's elements, from its slice of the body's binary part, into its "data"."""
    offset = 0
    for i, tensor in enumerate(tensors):
        parameters = tensor.get("parameters") if type(tensor) is dict else None
        size = parameters.get("binary_data_size") if type(parameters) is dict else None
        if size is None:
            continue
        name = tensor.get("name", i)
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise InvalidInput(f"input {name!r}: binary_data_size {size!r} runs past the body's binary part ({len(binary)} bytes)")
        tensor["data"] = _binary_elements(name, tensor.get("datatype"), binary[offset:offset + size])
        offset += size


def _binary_output(payload: dict) -> bool:
    parameters, outputs = payload.get("parameters"), payload.get("outputs")
    if type(parameters) is dict and parameters.get("binary_data_output"):
        return True
    return type(outputs) is list and any(type(o) is dict and type(o.get("parameters")) is dict and o["parameters"].get("binary_data")
                                         for o in outputs)


def _flat(data: Any) -> list:
    """A JSON tensor's elements in row-major order (the protocol allows nested lists; an element
    that is a list where the first was not is left for the type check to refuse)."""
    if type(data) is not list:
        return [data]
    if not data or type(data[0]) is not list:
        return data
    flat = []
    for x in data:
        flat.extend(_flat(x))
    return flat


def _binary_elements(name: str, datatype: str, raw: memoryview) -> Any:
    import numpy as np

    if datatype in _FIXED:
        width = np.dtype(_FIXED[datatype]).itemsize
        if len(raw) % width:
            raise InvalidInput(f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype} elements")
        return np.frombuffer(raw, dtype=_FIXED[datatype]).tolist()
    if datatype != "BYTES":
        raise InvalidInput(f"input {name!r}: datatype {datatype} is not one this model takes")
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {name!r}: a BYTES element's 4-byte length is cut off")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"input {name!r}: a BYTES element of {length} bytes runs past the input's data")
        try:
            elements.append(str(raw[offset:offset + length], "utf-8"))
        except UnicodeDecodeError as e:
            raise InvalidInput(f"input {name!r}: a BYTES element is not UTF-8 ({e.reason})") from e
        offset += length
    return elements


def infer_response(model: str, version: int | None, request: InferRequest, probabilities: np.ndarray) -> tuple[bytes, int | None]:
    """The answer's body, and its JSON part's length when the body is binary (the header's value)."""
    output: dict[str, Any] = {"name": OUTPUT, "datatype": "FP32", "shape": [len(probabilities)]}
    answer: dict[str, Any] = {"model_name": model, "outputs": [output]}
    if version is not None:
        answer["model_version"] = str(version)
    if request.id is not None:
        answer["id"] = request.id
    if not request.binary_output:
        output["data"] = probabilities.tolist()  # float32 to Python floats: exact, as float64 is
        return orjson.dumps(answer), None
    raw = probabilities.astype("<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(answer)
    return header + raw, len(header)
