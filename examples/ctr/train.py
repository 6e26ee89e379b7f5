"""Train a wide & deep CTR model with Horovod (data parallel) and TensorFlow, then export it.

    horovodrun -np 2 -H localhost:2 --gloo python train.py --features data/features \\
        --export-dir model --metrics-file metrics.json --checkpoint-dir ckpt

--features is preprocess.py's output: a version of a sample table (`<table>@v3`, what
`${samples.ctr@3}` becomes in a job spec; every file read is checked against the digest it was
committed with) or a plain features directory.

- Every rank trains on its own equal-sized shard of OUT/train from preprocess.py; gradients are
  averaged with hvd.DistributedGradientTape and the learning rate is scaled by the worker count.
- Rank 0 checkpoints the model, optimizer and epoch counter after every epoch. A restarted run
  restores the latest checkpoint on rank 0, broadcasts it to every rank and continues with the
  next epoch, printing "resumed from checkpoint: epoch E of N" (E epochs were already done).
- Rank 0 then evaluates on OUT/eval (AUC, logloss), exports a SavedModel whose serving_default
  signature maps cat int64 [None, C] and num float32 [None, K] to {"probability": float32 [None]},
  with feature_spec.json next to saved_model.pb, and writes the metrics JSON. The export is built
  in a temporary directory and renamed into place, so a crash never leaves a half model.

Every path may be a local path or a URI (what ${storage} is on a cluster stack). Features, the
feature spec and the metrics file go through platform_cli.storage (pyarrow: file://, hdfs://,
s3://). TensorFlow writes checkpoints and the SavedModel itself where it has a filesystem for
the location (local, file://; hdfs:// and s3:// only with tensorflow-io); otherwise it writes
them to the local disk and platform_cli.storage copies them there (and back, to resume).

TensorFlow uses OMP_NUM_THREADS threads per worker if set, else the cores divided among the
workers on this host: several workers each using every core just thrash.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from platform_cli import storage
from platform_cli.features import SPEC_FILE, FeatureSpec
from platform_cli.samples import is_version_location

# Keep the job log readable; set TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's own logging again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EVAL_BATCH = 8192


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Strings, not pathlib paths: Path("hdfs://nn:8020/x") would collapse the "//".
    parser.add_argument("--features", required=True, help="preprocess.py output: a sample table version (<table>@vN) or a directory or URI")
    parser.add_argument("--export-dir", required=True, help="SavedModel directory or URI (replaced)")
    parser.add_argument("--metrics-file", required=True)
    parser.add_argument("--checkpoint-dir", required=True, help="resumes from here if it has a checkpoint")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512, help="per worker")
    parser.add_argument("--lr", type=float, default=0.002, help="for one worker; scaled by the worker count")
    parser.add_argument("--embedding-dim", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "embedding_dim"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


class Features:
    """preprocess.py's output: the feature spec and the train and eval splits, from a sample
    table version (partitioned by split, the spec attached) or a features directory
    (train/, eval/, feature_spec.json)."""

    def __init__(self, location: str):
        self.location = location
        self.version = None
        if is_version_location(location):
            from platform_cli.samples.table import open_version

            self.version = open_version(location)
            self.spec_text = self.version.read_attachment(SPEC_FILE).decode()
        else:
            storage.require_complete(location)  # refuse half-written features
            self.spec_text = storage.read_text(storage.join(location, SPEC_FILE))
        self.spec = FeatureSpec.model_validate_json(self.spec_text)

    def describe(self) -> str:
        if self.version is None:
            return self.location
        info = self.version.info
        return f"samples {info.table}@{info.version} ({info.rows} rows, {info.digest})"

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cat int64 [N, C], num float32 [N, K], label float32 [N]) of the train or eval split."""
        columns = ["cat", "num", "label"]
        table = self.version.read(columns, split=name) if self.version else storage.read_parquet(storage.join(self.location, name), columns=columns)
        where = f"{self.location} ({name})"
        cat = _matrix(table.column("cat"), len(self.spec.categorical), np.int64, where)
        num = _matrix(table.column("num"), len(self.spec.numeric), np.float32, where)
        return cat, num, table.column("label").to_numpy().astype(np.float32)


def _matrix(column, width: int, dtype, path: str) -> np.ndarray:
    values = column.combine_chunks().flatten().to_numpy()
    if values.size != len(column) * width:
        raise SystemExit(f"error: {path} does not match {SPEC_FILE}: expected {width} values per row")
    return values.reshape(len(column), width).astype(dtype, copy=False)


def shard(arrays, rank: int, size: int):
    """Rank's slice of the rows, every shard the same length so all ranks run the same steps
    (a rank with an extra batch would wait forever in allreduce); at most size-1 rows are dropped."""
    per_rank = len(arrays[0]) // size
    rows = np.arange(rank, per_rank * size, size)
    return tuple(a[rows] for a in arrays)


def build_model(tf, spec: FeatureSpec, embedding_dim: int):
    """Wide & deep over one shared embedding table, each categorical field at its own offset."""
    buckets = [f.buckets for f in spec.categorical]
    offsets = tf.constant(np.cumsum([0, *buckets[:-1]]), dtype=tf.int64)
    width = len(buckets) * embedding_dim + len(spec.numeric)

    class WideAndDeep(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = tf.keras.layers.Embedding(sum(buckets), embedding_dim)
            self.wide_ids = tf.keras.layers.Embedding(sum(buckets), 1, embeddings_initializer="zeros")
            self.wide_num = tf.keras.layers.Dense(1)
            self.deep = tf.keras.Sequential(
                [tf.keras.layers.Dense(64, activation="relu"), tf.keras.layers.Dense(32, activation="relu"),
                 tf.keras.layers.Dense(1)]
            )

        def call(self, inputs):
            """Logits [N] for inputs {"cat": int64 [N, C], "num": float32 [N, K]}."""
            ids = inputs["cat"] + offsets
            wide = tf.reduce_sum(self.wide_ids(ids), axis=[1, 2]) + self.wide_num(inputs["num"])[:, 0]
            deep = tf.concat([tf.reshape(self.embedding(ids), [-1, width - len(spec.numeric)]), inputs["num"]], 1)
            return wide + self.deep(deep)[:, 0]

    return WideAndDeep()


def configure_threads(tf, local_size: int) -> None:
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, len(os.sched_getaffinity(0)) // local_size)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow already ran in this process (main() called in-process, e.g. by a test):
        # its thread pools are fixed by then, so train with them.
        pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    features = Features(args.features)  # before TensorFlow starts: a missing or half-written input fails fast
    import horovod.tensorflow as hvd
    import tensorflow as tf

    hvd.init()
    configure_threads(tf, hvd.local_size())
    rank, size = hvd.rank(), hvd.size()
    log = print if rank == 0 else (lambda *a, **k: None)

    spec = features.spec
    log(f"features: {features.describe()}", flush=True)
    train_all = features.split("train")
    cat, num, label = shard(train_all, rank, size)
    steps = len(label) // args.batch_size
    if steps == 0:
        raise SystemExit(f"error: {len(label)} train rows per worker is less than one batch of {args.batch_size}")
    log(f"{size} worker(s), {len(train_all[2])} train rows, {steps} steps of {args.batch_size} per worker per epoch",
        flush=True)

    tf.random.set_seed(args.seed)
    model = build_model(tf, spec, args.embedding_dim)
    optimizer = tf.keras.optimizers.Adam(args.lr * size)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Create every variable now, so a checkpoint restores fully before any step and the broadcast
    # below makes all ranks start from exactly rank 0's state (fresh or restored).
    model({"cat": cat[:1], "num": num[:1]})
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    manager, after_save = None, None
    if rank == 0:
        checkpoint_dir, after_save = storage.tf_checkpoint_dir(tf, args.checkpoint_dir)
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    if manager and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        log(f"resumed from checkpoint: epoch {int(epoch.numpy())} of {args.epochs}", flush=True)
    hvd.broadcast_variables(model.variables + optimizer.variables + [epoch], root_rank=0)

    @tf.function(
        input_signature=[
            tf.TensorSpec([args.batch_size, cat.shape[1]], tf.int64),
            tf.TensorSpec([args.batch_size, num.shape[1]], tf.float32),
            tf.TensorSpec([args.batch_size], tf.float32),
        ]
    )
    def train_step(cat, num, label):
        with tf.GradientTape() as tape:
            logits = model({"cat": cat, "num": num})
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=logits))
        tape = hvd.DistributedGradientTape(tape)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    rates = []
    for e in range(int(epoch.numpy()), args.epochs):
        # Seeded by epoch, so a resumed run sees the same batches the original run would have.
        order = np.random.default_rng([args.seed, e, rank]).permutation(len(label))
        started = time.monotonic()
        losses = []
        for s in range(steps):
            batch = order[s * args.batch_size:(s + 1) * args.batch_size]
            losses.append(train_step(cat[batch], num[batch], label[batch]))
        mean_loss = float(hvd.allreduce(tf.reduce_mean(losses), op=hvd.Average))
        rates.append(steps * args.batch_size * size / (time.monotonic() - started))
        epoch.assign(e + 1)
        if manager:
            manager.save(checkpoint_number=e + 1)
            after_save()  # copies it to --checkpoint-dir where TensorFlow could not write there
        log(f"epoch {e + 1}/{args.epochs} loss={mean_loss:.4f} examples/s={rates[-1]:.0f}", flush=True)

    if rank == 0:
        metrics = evaluate(model, features.split("eval"))
        print(f"eval auc={metrics['auc']:.4f} logloss={metrics['logloss']:.4f}", flush=True)
        export(tf, model, spec, features.spec_text, args.export_dir)
        print(f"exported {args.export_dir}", flush=True)
        metrics.update(
            train_examples=len(train_all[2]),
            epochs=args.epochs,
            workers=size,
            # Steady state: the first epoch of a process also pays for tracing the step function.
            examples_per_sec=round(float(np.mean(rates[1:] or rates)), 1) if rates else None,
        )
        storage.write_json(args.metrics_file, metrics)
    return 0


def evaluate(model, split) -> dict:
    from sklearn.metrics import log_loss, roc_auc_score

    cat, num, label = split
    logits = np.concatenate(
        [model({"cat": cat[i:i + EVAL_BATCH], "num": num[i:i + EVAL_BATCH]}).numpy()
         for i in range(0, len(label), EVAL_BATCH)]
    )
    probability = 1 / (1 + np.exp(-logits))
    return {
        "auc": round(float(roc_auc_score(label, probability)), 4),
        "logloss": round(float(log_loss(label, probability, labels=[0, 1])), 4),
        "eval_examples": len(label),
    }


def export(tf, model, spec: FeatureSpec, spec_json: str, export_dir: str) -> None:
    """SavedModel with the serving signature and the feature spec, moved into place when complete."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, len(spec.categorical)], tf.int64, name="cat"),
            tf.TensorSpec([None, len(spec.numeric)], tf.float32, name="num"),
        ]
    )
    def serve(cat, num):
        return {"probability": tf.sigmoid(model({"cat": cat, "num": num}))}

    # Staged and moved into place (or marked _SUCCESS last on an object store) by storage.
    with storage.staged_dir(export_dir) as tmp:
        storage.tf_save_model(tf, model, tmp, signatures={"serving_default": serve})
        storage.write_text(storage.join(tmp, SPEC_FILE), spec_json)



if __name__ == "__main__":
    storage.run_script(main)
