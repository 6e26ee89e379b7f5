"""Train the CTR model with TensorFlow parameter-server training, then export it.

    python -m platform_cli.targets.local_tf_ps --workers 2 --ps 1 -- \\
        python train_ps.py --features data/features --export-dir model \\
        --metrics-file metrics.json --checkpoint-dir ckpt

Every process runs this script; TF_CONFIG says which role it has (the local launcher or the
training operator's TFJob sets it):

- `ps` and `worker`: a tf.distribute.Server that serves until it is stopped. Variables live on
  the parameter servers; workers run the training steps they are sent.
- `chief`: ParameterServerStrategy with a ClusterCoordinator. It builds the model (train.py's
  wide & deep, the same code as the Horovod job), gives every worker its own shuffled, repeated
  dataset (create_per_worker_dataset), schedules one epoch of steps at a time, checkpoints
  after every epoch (a restarted job resumes), then evaluates, exports the SavedModel and
  writes the metrics file exactly as train.py does, and exits - which ends the job.

Same flags as train.py, with the same local paths or URIs, plus --optimizer adam|adagrad (see
parse_ps_args); --batch-size is per step (one step runs on one worker at a time).

Sharded embeddings (the job spec's `sharding`, which the platform passes as PLINTH_PS_SHARDS or
PLINTH_PS_MAX_SHARD_BYTES, with PLINTH_EMBEDDING_ROWS, the rows the servers are sized for):
TensorFlow's own partitioner splits every variable along its rows - FixedShardsPartitioner into
equal shards, or MaxSizePartitioner into shards of at most that many bytes - and the strategy
places the shards on the parameter servers in turn, so each server holds its part of the
tables and of the optimizer's slots. Each server's shard is made of PIECES_PER_SHARD
variables (see there why). A checkpoint stores each shard as a slice of the whole
variable, so a job with another shard count restores it. The exported SavedModel is built from
a plain copy of the model restored from that checkpoint: one variable per table, as unsharded.
"""

from __future__ import annotations

import os
import time

import numpy as np

from platform_cli import storage
from train import Features, build_model, evaluate, export, parse_args

# Keep the job log readable; set TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's own logging again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A worker's RPC failure surfaces to the coordinator (which retries the step elsewhere) instead
# of failing fast inside TensorFlow's runtime: TensorFlow's advice for parameter-server training.
os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")


def serve(tf, resolver) -> None:
    """A parameter server or worker: serve the cluster until stopped."""
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=resolver.task_type, task_index=resolver.task_id,
        protocol=resolver.rpc_layer or "grpc", start=True,
    )
    print(f"{resolver.task_type} {resolver.task_id} serving at {server.target}", flush=True)
    server.join()


OPTIMIZERS = {"adam": "Adam", "adagrad": "Adagrad"}


def parse_ps_args(argv: list[str] | None = None):
    """train.py's flags, plus the optimizer: Adam (as train.py) or Adagrad, whose update of an
    embedding table touches only the rows of the batch (Adam decays every row's moments at
    every step) and which keeps one slot per parameter instead of two - what large tables want."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    own, rest = parser.parse_known_args(argv)
    args = parse_args(rest)
    args.optimizer = own.optimizer
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_ps_args(argv)
    import tensorflow as tf

    # Intra-op threads as requested; inter-op threads are left to TensorFlow: servers run
    # blocking remote ops (receives, dataset reads) that deadlock with a single inter-op thread.
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if resolver.task_type in ("ps", "worker"):
        serve(tf, resolver)
        return 0
    if resolver.task_type != "chief":
        raise SystemExit(f"error: TF_CONFIG task type is {resolver.task_type!r}; expected chief, worker or ps")
    return train(tf, resolver, args)


# TensorFlow creates a variable by computing its initial value eagerly on its server: a random
# table is drawn, scaled and shifted, and two of those temporaries are alive beside the new
# variable, so creating one variable of S bytes peaks at 3 S. A shard created as 4 variables,
# one after another, peaks at its own size plus half of it - under what the server holds once
# an optimizer's slot exists (Adagrad, Adam) - instead of three times it.
PIECES_PER_SHARD = 4


def variable_partitioner(tf, servers: int):
    """TensorFlow's partitioner for the job's sharding, or None (every variable whole on one
    server). The strategy places partitions on the servers in turn, so PIECES_PER_SHARD times
    as many partitions as servers give every server PIECES_PER_SHARD of them."""
    shards = os.environ.get("PLINTH_PS_SHARDS")
    if shards:
        return tf.distribute.experimental.partitioners.FixedShardsPartitioner(int(shards) * PIECES_PER_SHARD)
    max_shard_bytes = os.environ.get("PLINTH_PS_MAX_SHARD_BYTES")
    if max_shard_bytes:
        return tf.distribute.experimental.partitioners.MaxSizePartitioner(
            int(max_shard_bytes) // PIECES_PER_SHARD, max_shards=servers * PIECES_PER_SHARD)
    return None


def check_sized_rows(spec: FeatureSpec) -> None:
    """Refuse tables bigger than the parameter servers were sized for (they would run out of memory)."""
    declared = os.environ.get("PLINTH_EMBEDDING_ROWS")
    rows = sum(f.buckets for f in spec.categorical)
    if declared and rows > int(declared):
        raise SystemExit(f"error: the feature spec has {rows} embedding rows, more than the {declared} of the job's "
                         f"sharding.embeddings.rows the parameter servers are sized for; set sharding.embeddings.rows: {rows}")


def describe_shards(model) -> str:
    """How each table ended up split: "embedding 40x8 in 16 piece(s) on 4 server(s), ..."."""
    parts = []
    for name in ("embedding", "wide_ids"):
        variable = getattr(model, name).embeddings
        pieces = getattr(variable, "variables", [variable])  # a ShardedVariable lists its partitions
        servers = len({piece.device for piece in pieces})
        parts.append(f"{name} {variable.shape[0]}x{variable.shape[1]} in {len(pieces)} piece(s) on {servers} server(s)")
    return ", ".join(parts)


def train(tf, resolver, args) -> int:
    servers = resolver.cluster_spec().num_tasks("ps")
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=variable_partitioner(tf, servers))
    coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
    workers = resolver.cluster_spec().num_tasks("worker")

    features = Features(args.features)
    spec = features.spec
    check_sized_rows(spec)
    cat, num, label = features.split("train")
    steps = len(label) // args.batch_size
    if steps == 0:
        raise SystemExit(f"error: {len(label)} train rows is less than one batch of {args.batch_size}")
    print(f"{workers} worker(s), {servers} parameter server(s), {len(label)} train rows, {steps} steps of {args.batch_size} per epoch", flush=True)

    tf.random.set_seed(args.seed)
    with strategy.scope():  # variables are created on the parameter servers
        model = build_model(tf, spec, args.embedding_dim)
        # Keras' legacy optimizers: they give a sharded variable's slots the same shards and
        # save them as slices of one whole slot, so a checkpoint restores into another shard
        # count with its optimizer state. The current Keras optimizers keep one slot per shard,
        # saved by position: with another shard count they would not match.
        optimizer = getattr(tf.keras.optimizers.legacy, OPTIMIZERS[args.optimizer])(args.lr)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        model({"cat": cat[:1], "num": num[:1]})
        # The slots now, so a checkpoint restores them before any step (legacy optimizers have
        # no public build()).
        optimizer._create_all_weights(model.trainable_variables)
    print(f"embeddings: {describe_shards(model)}", flush=True)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    checkpoint_dir, after_save = storage.tf_checkpoint_dir(tf, args.checkpoint_dir)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        print(f"resumed from checkpoint: epoch {int(epoch.numpy())} of {args.epochs}", flush=True)

    def dataset_fn():
        # Each worker reads its own copy, repeated, in its own random order (unseeded: a fixed
        # seed would give every worker the same batches): the coordinator hands steps to
        # whichever worker is free, so no worker ever runs out.
        data = tf.data.Dataset.from_tensor_slices(({"cat": cat, "num": num}, label))
        return data.shuffle(4096).repeat().batch(args.batch_size, drop_remainder=True).prefetch(2)

    iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))

    @tf.function
    def train_step(iterator):
        def step(features, labels):
            with tf.GradientTape() as tape:
                logits = model(features)
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        features, labels = next(iterator)
        return strategy.run(step, args=(features, labels))

    rates = []
    for e in range(int(epoch.numpy()), args.epochs):
        started = time.monotonic()
        losses = [coordinator.schedule(train_step, args=(iterator,)) for _ in range(steps)]
        coordinator.join()
        mean_loss = float(np.mean([loss.fetch() for loss in losses]))
        rates.append(steps * args.batch_size / (time.monotonic() - started))
        epoch.assign(e + 1)
        manager.save(checkpoint_number=e + 1)
        after_save()  # copies it to --checkpoint-dir where TensorFlow could not write there
        print(f"epoch {e + 1}/{args.epochs} loss={mean_loss:.4f} examples/s={rates[-1]:.0f}", flush=True)

    # Evaluate and export from a plain (undistributed, unsharded) copy restored from the last
    # checkpoint: the serving signature must not refer to parameter servers that are gone once
    # the job ends, and the SavedModel holds one variable per table, as the Horovod job's does,
    # whatever the shard count.
    local = build_model(tf, spec, args.embedding_dim)
    local({"cat": cat[:1], "num": num[:1]})
    tf.train.Checkpoint(model=local).restore(manager.latest_checkpoint).expect_partial().assert_existing_objects_matched()
    metrics = evaluate(local, features.split("eval"))
    print(f"eval auc={metrics['auc']:.4f} logloss={metrics['logloss']:.4f}", flush=True)
    export(tf, local, spec, features.spec_text, args.export_dir)
    print(f"exported {args.export_dir}", flush=True)
    metrics.update(
        train_examples=len(label), epochs=args.epochs, workers=workers, parameter_servers=servers,
        examples_per_sec=round(float(np.mean(rates[1:] or rates)), 1) if rates else None,
    )
    storage.write_json(args.metrics_file, metrics)
    return 0


if __name__ == "__main__":
    storage.run_script(main)
