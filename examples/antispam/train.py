"""Train a small Keras text classifier for spam and export it for Plinth's model server.

    python train.py --raw data/raw --export-dir model --metrics-file metrics.json

Features go through platform_cli.features.transform (the code the model server runs on
requests): the comment text as hashed word tokens, the sender's region as a hashed id, the
account age and link count standardised. The model averages token embeddings, adds the
region embedding and the numbers, and outputs P(spam). It trains in a few seconds on CPU.

The export's serving_default signature maps cat int64 [None, 1], num float32 [None, 2] and
tokens int64 [None, MAX_TOKENS] to {"probability": float32 [None]}, with feature_spec.json next
to saved_model.pb; metrics.json holds eval auc and logloss. Paths may be local or URIs, all
opened through platform_cli.storage, as in examples/ctr/train.py.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from platform_cli import storage
from platform_cli.features import SPEC_FILE, CategoricalFeature, FeatureSpec, NumericFeature, TextFeature, transform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LABEL = "spam"
MAX_TOKENS = 24
WORD_BUCKETS = 4096


def fit_spec(train: pd.DataFrame) -> FeatureSpec:
    """Numeric statistics from the train split only (log1p where the field is heavy-tailed)."""
    age = np.log1p(train["sender_age_days"].astype(float))
    links = train["links"].astype(float)
    return FeatureSpec(
        categorical=[CategoricalFeature(name="sender_region", buckets=64)],
        numeric=[
            NumericFeature(name="sender_age_days", mean=float(age.mean()), std=float(age.std()) or 1.0, log1p=True),
            NumericFeature(name="links", mean=float(links.mean()), std=float(links.std()) or 1.0),
        ],
        text=[TextFeature(name="text", buckets=WORD_BUCKETS, max_tokens=MAX_TOKENS)],
        label=LABEL,
    )


def build_model(tf, spec: FeatureSpec):
    tokens = tf.keras.Input(shape=(MAX_TOKENS,), dtype="int64", name="tokens")
    cat = tf.keras.Input(shape=(len(spec.categorical),), dtype="int64", name="cat")
    num = tf.keras.Input(shape=(len(spec.numeric),), dtype="float32", name="num")
    words = tf.keras.layers.Embedding(WORD_BUCKETS, 16, mask_zero=True)(tokens)
    text = tf.keras.layers.GlobalAveragePooling1D()(words)
    region = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(64, 4)(cat))
    hidden = tf.keras.layers.Dense(16, activation="relu")(tf.keras.layers.Concatenate()([text, region, num]))
    probability = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
    return tf.keras.Model({"cat": cat, "num": num, "tokens": tokens}, probability)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", required=True, help="generate.py's output directory or URI")
    parser.add_argument("--export-dir", required=True, help="SavedModel directory or URI (replaced)")
    parser.add_argument("--metrics-file", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    import tensorflow as tf
    from sklearn.metrics import log_loss, roc_auc_score

    started = time.monotonic()
    tf.keras.utils.set_random_seed(args.seed)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    storage.require_complete(args.raw)
    frame = storage.read_parquet(args.raw).to_pandas()
    # A split seed of its own: the generator drew the labels from a generator seeded with --seed.
    is_eval = np.random.default_rng([args.seed, 1]).random(len(frame)) < 0.2
    train, evaluation = frame[~is_eval].reset_index(drop=True), frame[is_eval].reset_index(drop=True)
    spec = fit_spec(train)
    x_train, x_eval = transform(spec, train), transform(spec, evaluation)

    model = build_model(tf, spec)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.fit(x_train, train[LABEL].to_numpy(np.float32), batch_size=128, epochs=args.epochs, verbose=2)
    predicted = model.predict(x_eval, batch_size=1024, verbose=0)[:, 0]
    metrics = {"auc": float(roc_auc_score(evaluation[LABEL], predicted)),
               "logloss": float(log_loss(evaluation[LABEL], predicted.clip(1e-7, 1 - 1e-7), labels=[0, 1])),
               "train_rows": len(train), "eval_rows": len(evaluation)}
    print(f"eval auc={metrics['auc']:.4f} logloss={metrics['logloss']:.4f}")

    @tf.function(input_signature=[
        tf.TensorSpec([None, len(spec.categorical)], tf.int64, name="cat"),
        tf.TensorSpec([None, len(spec.numeric)], tf.float32, name="num"),
        tf.TensorSpec([None, MAX_TOKENS], tf.int64, name="tokens"),
    ])
    def serve(cat, num, tokens):
        return {"probability": model({"cat": cat, "num": num, "tokens": tokens}, training=False)[:, 0]}

    with storage.staged_dir(args.export_dir) as tmp:
        storage.tf_save_model(tf, model, tmp, signatures={"serving_default": serve})
        spec.save(storage.join(tmp, SPEC_FILE))
    storage.write_json(args.metrics_file, metrics)
    print(f"exported {args.export_dir} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    storage.run_script(main)
