"""The feature transformer: raw request rows -> model inputs, as KServe pre-processing.

On a cluster each version's InferenceService runs this as its transformer container, in front
of its predictor (Plinth's model server with --tensor-inputs, holding the SavedModel):

    python -m platform_cli.serving.transformer --feature_spec /mnt/models/feature_spec.json
        (KServe adds --model_name <isvc> --predictor_host <predictor service> --http_port 8080)

A client sends raw fields, {"instances": [{"user_id": "u1", "hour": 21, ...}]}; preprocess()
applies the model's own feature spec with platform_cli.features.transform, whose features the
Spark job computes bit for bit offline, and KServe's predict() forwards the model inputs
in row format, {"instances": [{"cat": [...], "num": [...]}, ...]}, to the predictor. Requests
it cannot use get a 400 with the reason, before the predictor is bothered.

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

from kserve import Model, ModelServer
from kserve.errors import InvalidInput as KServeInvalidInput
from kserve.model import PredictorConfig

from platform_cli.features import FeatureSpec
from platform_cli.serving.inputs import InvalidInput, instances, request_inputs


class FeatureTransformer(Model):
    """KServe transformer: preprocess() is the shared feature transform; predict() is KServe's
    own forward to the predictor (v1 REST)."""

    def __init__(self, name: str, spec_path: Path, predictor_host: str | None):
        config = PredictorConfig(predictor_host=predictor_host, predictor_protocol="v1") if predictor_host else None
        super().__init__(name, config)
        self.spec_path = Path(spec_path)
        self.spec: FeatureSpec | None = None

    def load(self) -> bool:
        self.spec = FeatureSpec.load(self.spec_path)
        self.ready = True
        return self.ready

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> dict:
        try:
            inputs = {key: value.tolist() for key, value in request_inputs(self.spec, instances(payload)).items()}
        except InvalidInput as e:  # KServe's own exception type is what its server answers 400 for
            raise KServeInvalidInput(e.reason) from e
        return {"instances": [dict(zip(inputs, row)) for row in zip(*inputs.values())]}


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
