"""Stock KServe 0.15.2 with a trivial numpy model: the ceiling of KServe's own Python server here.

    python bench/peers/kserve_trivial.py --http_port 8080

The model sums each instance's numeric fields with numpy: no feature transform, no TensorFlow.
"""

from __future__ import annotations

import argparse

import numpy as np
from kserve import Model, ModelServer, model_server


class Trivial(Model):
    def __init__(self) -> None:
        super().__init__("ctr")
        self.ready = True

    def predict(self, payload, headers=None):
        rows = payload["instances"]
        values = np.array([[v for v in row.values() if isinstance(v, (int, float))] for row in rows], dtype=float)
        return {"predictions": values.sum(axis=1).tolist()}


if __name__ == "__main__":
    args, _ = argparse.ArgumentParser(parents=[model_server.parser]).parse_known_args()
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([Trivial()])
