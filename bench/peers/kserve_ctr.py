"""KServe's own path for the CTR model: its Python model server, a Model whose preprocess is
Plinth's feature transform and whose predict calls the SavedModel's serving signature, one
request at a time (KServe's request batching lives in its agent, a separate Go process on a
cluster, which is not part of the Python package).

    python bench/peers/kserve_ctr.py --model-dir DIR --http_port 8080
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from kserve import Model, ModelServer, model_server  # noqa: E402

from platform_cli.features import FeatureSpec  # noqa: E402
from platform_cli.serving.inputs import instances, request_inputs  # noqa: E402


class Ctr(Model):
    def __init__(self, model_dir: str) -> None:
        super().__init__("ctr")
        self.spec = FeatureSpec.load(os.path.join(model_dir, "feature_spec.json"))
        self.saved_model = tf.saved_model.load(model_dir)
        self.signature = self.saved_model.signatures["serving_default"]
        self.ready = True

    def preprocess(self, payload, headers=None):
        return request_inputs(self.spec, instances(payload))

    def predict(self, inputs, headers=None):
        outputs = self.signature(**{key: tf.constant(value) for key, value in inputs.items()})
        return {"predictions": outputs["probability"].numpy().astype(float).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model-dir", required=True)
    args, _ = parser.parse_known_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([Ctr(args.model_dir)])
