"""The feature transformer: raw request rows -> model inputs, as KServe pre-processing.

On a cluster each version's InferenceService runs this as its transformer container, in front
of its predictor (Plinth's model server with --tensor-inputs, holding the SavedModel):

    python -m platform_cli.serving.transformer --feature_spec /mnt/models/feature_spec.json
        (KServe adds --model_name <isvc> --predictor_host <predictor service> --http_port 8080)

A client sends raw fields, as KServe's v1 form ({"instances": [{"user_id": "u1", "hour": 21,
...}]}) or the Open Inference Protocol's (v2: each raw field a named input tensor, the inputs
and the answer as serving/open_inference.py defines them for the local model server, which
KServe's own v2 routes here carry, its metadata listing the same inputs); preprocess() applies
the model's own feature spec with platform_cli.features.transform, whose features the Spark
job computes bit for bit offline, and KServe's predict() forwards the model inputs in row
format, {"instances": [{"cat": [...], "num": [...]}, ...]}, to the predictor. A v2 request
gets its probabilities back as the protocol's FP32 output. Requests it cannot use get a 400
with the reason, before the predictor is bothered.

The predictor is not TensorFlow Serving because TF Serving wants the SavedModel under a numeric
version directory (<base>/1/), and the registry keeps each version's model directory as
training exported it. The local model server runs the same request_inputs() (serving/inputs.py)
in-process in front of its model (no extra hop), so both platforms transform requests with one
piece of code.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput as KServeInvalidInput
from kserve.model import InferenceVerb, PredictorConfig

from platform_cli.features import FeatureSpec
from platform_cli.serving import open_inference
from platform_cli.serving.inputs import InvalidInput, instances, request_inputs


class FeatureTransformer(Model):
    """KServe transformer: preprocess() is the shared feature transform; predict() is KServe's
    own forward to the predictor (v1 REST); a v2 request's answer is made a v2 answer."""

    def __init__(self, name: str, spec_path: Path, predictor_host: str | None):
        config = PredictorConfig(predictor_host=predictor_host, predictor_protocol="v1") if predictor_host else None
        super().__init__(name, config)
        self.spec_path = Path(spec_path)
        self.spec: FeatureSpec | None = None
        self.signature: open_inference.Signature | None = None

    def load(self) -> bool:
        self.spec = FeatureSpec.load(self.spec_path)
        self.signature = open_inference.Signature(self.spec)
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        """The raw fields as v2 inputs: KServe's metadata route (GET /v2/models/<name>) lists them."""
        return self.signature.metadata(self.name, [], "")["inputs"]

    def get_output_types(self) -> list[dict]:
        return self.signature.metadata(self.name, [], "")["outputs"]

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        try:
            rows = self._v2_rows(payload) if isinstance(payload, InferRequest) else instances(payload)
            inputs = {key: value.tolist() for key, value in request_inputs(self.spec, rows).items()}
        except InvalidInput as e:  # KServe's own exception type is what its server answers 400 for
            raise KServeInvalidInput(e.reason) from e
        return {"instances": [dict(zip(inputs, row)) for row in zip(*inputs.values())]}

    def _v2_rows(self, request: InferRequest):
        """A v2 request's rows, checked against the model's inputs as the local model server checks them."""
        tensors = [{"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape, "data": _elements(tensor)}
                   for tensor in request.inputs]
        return self.signature.rows(open_inference.InferRequest(request.id, tensors))

    async def __call__(self, body: Any, headers: dict[str, str] | None = None, verb: InferenceVerb = InferenceVerb.PREDICT) -> Any:
        answer, response_headers = await super().__call__(body, headers, verb)
        if not isinstance(body, InferRequest):
            return answer, response_headers
        probabilities = np.asarray(answer["predictions"], dtype=np.float32)
        output = InferOutput(open_inference.OUTPUT, [len(probabilities)], "FP32", probabilities)
        return InferResponse(body.id, self.name, [output], use_binary_outputs=body.use_binary_outputs,
                             requested_outputs=body.request_outputs), response_headers


def _elements(tensor: Any) -> list:
    """A KServe input tensor's elements: the JSON data as sent, or its binary part decoded."""
    if tensor.data is not None and not isinstance(tensor.data, (bytes, bytearray)):
        return tensor.data
    return [x.decode("utf-8") if isinstance(x, bytes) else x for x in tensor.as_numpy().reshape(-1).tolist()]


def main(argv: list[str] | None = None) -> None:
    from kserve import model_server

    # KServe's own flags (--model_name, --predictor_host, --http_port, ...), which its controller
    # passes to every transformer container, plus where the version's feature spec is.
    parser = argparse.ArgumentParser(prog="python -m platform_cli.serving.transformer", parents=[model_server.parser])
    parser.add_argument("--feature_spec", type=Path, default=Path("/mnt/models/feature_spec.json"))
    args, _ = parser.parse_known_args(argv)
    model = FeatureTransformer(args.model_name, args.feature_spec, args.predictor_host)
    model.load()
    ModelServer(http_port=args.http_port, enable_grpc=False).start([model])

if __name__ == "__main__":
    main()
