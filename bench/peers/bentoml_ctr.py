"""BentoML's adaptive batching for the CTR model: the same SavedModel and Plinth's feature
transform, in a BentoML 1.4 service whose API is batchable (its dispatcher coalesces
concurrent requests into one call, up to 64 rows).

    PLINTH_BENCH_MODEL_DIR=DIR bentoml serve bench/peers/bentoml_ctr.py:Ctr --port 8080

Runs in its own virtual environment (bench/serving.py creates it): BentoML is not one of
Plinth's dependencies.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import bentoml  # noqa: E402


@bentoml.service(workers=1)
class Ctr:
    def __init__(self) -> None:
        import tensorflow as tf

        from platform_cli.features import FeatureSpec

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        model_dir = os.environ["PLINTH_BENCH_MODEL_DIR"]
        self.tf = tf
        self.spec = FeatureSpec.load(os.path.join(model_dir, "feature_spec.json"))
        self.saved_model = tf.saved_model.load(model_dir)
        self.signature = self.saved_model.signatures["serving_default"]

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=10_000)
    def predict(self, instances: list[dict]) -> list[float]:
        from platform_cli.features import transform

        inputs = transform(self.spec, instances)
        outputs = self.signature(**{key: self.tf.constant(value) for key, value in inputs.items()})
        return outputs["probability"].numpy().astype(float).tolist()
