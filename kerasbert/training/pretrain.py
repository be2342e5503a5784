"""`python -m kerasbert.train pretrain`: pretrain BERT (MLM + NSP) from raw text.

What Google's `create_pretraining_data.py` + `run_pretraining.py` did, with
the masking done afresh every epoch inside the `tf.data` pipeline
(`kerasbert.data.pretraining`) and `tf.distribute` for scale. The result is a
keras-hub preset folder `<output_dir>/pretrained/` that fine-tuning starts
from with `--init_checkpoint <output_dir>/pretrained`.

Why a custom training loop rather than `model.fit` + `BackupAndRestore`:

* resuming must restore the DATA position, not only the weights: the loop
  puts the `tf.data` iterator itself in the `tf.train.Checkpoint` (with the
  step, model and optimizer state), so a run killed at any moment continues
  with the next unseen batch; `BackupAndRestore` restarts the epoch;
* under `tf.distribute`, Keras 3 optimisers clip and accumulate gradients
  PER REPLICA before the all-reduce (clipping the wrong norm, and gradient
  accumulators are mirrored variables). Here each update all-reduces first,
  then clips the global gradient, then applies: the loss trajectory is the
  same on 1 device and on N replicas (tested);
* gradient accumulation sums micro-batch gradients in tensors inside one
  step (no accumulator variables, nothing half-accumulated in a checkpoint),
  normalised by the masked-token count of the whole effective batch;
* `jit_compile` covers the forward/backward pass of a micro-batch (XLA
  cannot compile the cross-replica parts of the optimizer update).

Example:

    python -m kerasbert.train pretrain --input_files corpus.txt \\
        --vocab_file vocab.txt --output_dir /tmp/bert --model_size tiny \\
        --train_batch_size 32 --num_train_steps 10000
"""

import argparse
import dataclasses
import glob
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from kerasbert import cli
from kerasbert.data import pretraining as data
from kerasbert.modeling.encoder import ENCODER_SIZES, HEAD_SIZE, INTERMEDIATE_FACTOR, build_encoder, encoder_config
from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor, load_vocabulary
from kerasbert.tasks.pretraining import (
    build_pretraining_model,
    pretraining_loss,
    pretraining_sums,
    save_pretrained,
    summarize,
)
from kerasbert.training import distribute
from kerasbert.training.optimization import OPTIMIZERS, create_optimizer, expect_reduced_gradients
from kerasbert.training.progress import ProgressLines

MIXED_PRECISION = {
    "none": None,
    "float16": "mixed_float16",
    "bfloat16": "mixed_bfloat16",
}
SUM_KEYS = (
    "mlm_loss",
    "mlm_correct",
    "mlm_count",
    "nsp_loss",
    "nsp_correct",
    "nsp_count",
)


@dataclasses.dataclass
class PretrainConfig:
    """Settings of one pretraining run (the `pretrain` flags, see --help).

    `train_batch_size` is GLOBAL and per optimizer update: with
    `gradient_accumulation_steps` k, each update sums the gradients of k
    micro-batches of `train_batch_size / k` sequences, split over replicas.
    """

    output_dir: str
    vocabulary_size: int
    vocab_file: str = None
    lowercase: bool = True
    model_size: str = "tiny"
    num_layers: int = None
    hidden_dim: int = None
    dropout: float = 0.1
    max_seq_length: int = 128
    train_batch_size: int = 32
    num_train_steps: int = 1000
    num_warmup_steps: int = 100
    learning_rate: float = 1e-4
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    clipnorm: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "none"
    jit_compile: bool = True
    seed: int = 12345
    save_checkpoints_steps: int = 1000
    keep_checkpoints: int = 3
    log_steps: int = 100
    max_minutes: float = None
    progress_seconds: float = 30.0

    @property
    def micro_batch_size(self):
        return self.train_batch_size // max(1, self.gradient_accumulation_steps)


class BatchSizeError(ValueError):
    """`train_batch_size` does not split into accumulation steps x replicas."""

    def __init__(self, train_batch_size, accumulation_steps, replicas):
        self.train_batch_size = train_batch_size
        self.accumulation_steps = accumulation_steps
        self.replicas = replicas
        super().__init__(
            f"train_batch_size {train_batch_size} must be divisible by "
            f"gradient_accumulation_steps ({accumulation_steps}) x replicas ({replicas})"
        )


class CorpusError(ValueError):
    """The text files cannot make pretraining data; `files` names them."""

    def __init__(self, files, message):
        self.files = files
        super().__init__(message)


class NoSequencePairsError(CorpusError):
    """The corpus gave no sequence pairs (too little text, or all held out)."""

    def __init__(self, files, split):
        self.split = split
        super().__init__(
            files,
            f"no {split} sequence pairs in {files}: more text, or a smaller holdout_fraction, is needed",
        )


def _as_float(x):
    return float(np.asarray(x))


class Pretrainer:
    """The pretraining loop: model, optimizer, distributed data, checkpoints.

    Args:
        config: a `PretrainConfig`.
        dataset_fn: `dataset_fn(batch_size, num_shards, shard_index)` returning
            a `tf.data.Dataset` of `(features, labels, sample_weights)` batches
            of `batch_size` (the contract of
            `kerasbert.data.pretraining.pretraining_dataset`), this worker's
            shard. Finite datasets are repeated (fresh masks each epoch).
        strategy: a `tf.distribute.Strategy` (default: no distribution).
        verbose: print progress (chief only).

    Raises:
        BatchSizeError: `train_batch_size` is not a multiple of
            `gradient_accumulation_steps` x replicas.
        ValueError: an impossible encoder shape (see `encoder_config`).

    Example:

    >>> trainer = Pretrainer(config, dataset_fn)  # doctest: +SKIP
    >>> history = trainer.train()  # doctest: +SKIP
    >>> history["final"]["mlm_accuracy"]  # doctest: +SKIP
    """

    def __init__(self, config, dataset_fn, strategy=None, verbose=True):
        self.config = config
        self.dataset_fn = dataset_fn
        self.strategy = strategy or tf.distribute.get_strategy()
        self.verbose = verbose and distribute.is_chief()
        k = max(1, int(config.gradient_accumulation_steps))
        if config.train_batch_size % (k * self.strategy.num_replicas_in_sync):
            raise BatchSizeError(config.train_batch_size, k, self.strategy.num_replicas_in_sync)
        self.accumulation = k
        self.checkpoint_dir = os.path.join(config.output_dir, "checkpoints")
        keras.utils.set_random_seed(config.seed)
        policy = MIXED_PRECISION[config.mixed_precision]
        previous_policy = keras.config.dtype_policy()
        if policy:
            keras.config.set_dtype_policy(policy)
        try:
            with self.strategy.scope():
                self._build()
        finally:
            keras.config.set_dtype_policy(previous_policy)

    # ------------------------------------------------------------ building

    def _build(self):
        c = self.config
        overrides = dict(dropout=c.dropout, max_sequence_length=max(512, c.max_seq_length))
        if c.num_layers:
            overrides["num_layers"] = c.num_layers
        if c.hidden_dim:
            # encoder_config re-derives heads and intermediate size.
            overrides["hidden_dim"] = c.hidden_dim
        self.backbone = build_encoder(c.model_size, c.vocabulary_size, **overrides)
        self.model = build_pretraining_model(self.backbone)
        optimizer = create_optimizer(
            c.learning_rate,
            total_steps=c.num_train_steps,
            warmup_steps=c.num_warmup_steps,
            optimizer=c.optimizer,
            weight_decay=c.weight_decay,
            # Clipping and accumulation happen in the loop, after the
            # all-reduce (see the module docstring).
            clipnorm=None,
            gradient_accumulation_steps=None,
        )
        expect_reduced_gradients(optimizer)
        if c.mixed_precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(self.model.trainable_variables)
        self.optimizer = optimizer
        self.step = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="global_step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def _worker_dataset(self, dataset_fn, global_batch_size, repeat=True):
        """This worker's plain `tf.data` pipeline: its shard, its share of
        each global batch (split over its local replicas by `_to_replicas`).

        A plain dataset iterator (not a `tf.distribute` one, which is not
        checkpointable) goes into the checkpoint, so a resumed run continues
        at the next unseen batch.
        """
        workers = distribute.worker_count(self.strategy)
        worker_id = int(getattr(self.strategy.extended, "_id_in_cluster", 0))
        ds = dataset_fn(global_batch_size // workers, workers, worker_id)
        if repeat and ds.cardinality() != tf.data.INFINITE_CARDINALITY:
            ds = ds.repeat()
        return ds

    def _to_replicas(self, batch):
        """Splits this worker's batch into per-replica values."""
        strategy = self.strategy
        local = max(1, strategy.num_replicas_in_sync // distribute.worker_count(strategy))
        if strategy.num_replicas_in_sync == 1:
            return batch

        def value_fn(ctx):
            index = ctx.replica_id_in_sync_group % local
            return tf.nest.map_structure(lambda x: tf.split(x, local, axis=0)[index], batch)

        return strategy.experimental_distribute_values_from_function(value_fn)

    # ------------------------------------------------------------ steps

    def _grad_fn(self):
        model = self.model
        variables = model.trainable_variables

        def grad_fn(batch, mlm_count, nsp_count, scale):
            features, labels, weights = batch
            with tf.GradientTape() as tape:
                outputs = model(features, training=True)
                sums = pretraining_sums(labels, outputs, weights)
                loss = pretraining_loss(sums, mlm_count, nsp_count)
                scaled = loss * scale
            grads = tape.gradient(scaled, variables)
            grads = [tf.convert_to_tensor(g) for g in grads]
            return grads, sums

        if self.config.jit_compile:
            return tf.function(grad_fn, jit_compile=True, reduce_retracing=True)
        return grad_fn

    def _loss_scale(self):
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return tf.cast(self.optimizer.dynamic_scale, tf.float32)
        return tf.constant(1.0)

    def _make_train_step(self):
        grad_fn = self._grad_fn()
        optimizer = self.optimizer
        variables = self.model.trainable_variables
        clipnorm = self.config.clipnorm
        k = self.accumulation

        def replica_step(batches):
            ctx = tf.distribute.get_replica_context()
            sum_ = tf.distribute.ReduceOp.SUM
            # Counts of the WHOLE effective batch (all micro-batches, all
            # replicas): every micro-batch's loss is divided by them, so the
            # summed gradients are those of one big batch.
            mlm_count = ctx.all_reduce(sum_, tf.add_n([tf.reduce_sum(b[2]["mlm"]) for b in batches]))
            nsp_count = ctx.all_reduce(sum_, tf.add_n([tf.reduce_sum(b[2]["nsp"]) for b in batches]))
            scale = self._loss_scale()
            total_grads, total_sums = None, None
            for batch in batches:
                grads, sums = grad_fn(batch, mlm_count, nsp_count, scale)
                if total_grads is None:
                    total_grads, total_sums = grads, sums
                else:
                    total_grads = [a + b for a, b in zip(total_grads, grads)]
                    total_sums = {s: total_sums[s] + sums[s] for s in SUM_KEYS}
            total_grads = ctx.all_reduce(sum_, total_grads)
            total_sums = ctx.all_reduce(sum_, total_sums)
            if clipnorm:
                # Gradients are still multiplied by the loss scale: clip at
                # clipnorm x scale == clip the true gradient at clipnorm.
                total_grads, _ = tf.clip_by_global_norm(total_grads, clipnorm * scale)
            optimizer.apply(total_grads, variables)
            return total_sums

        @tf.function
        def train_step(iterator):
            batches = tuple(self._to_replicas(next(iterator)) for _ in range(k))
            sums = self.strategy.run(replica_step, args=(batches,))
            self.step.assign_add(1)
            # Already all-reduced: every replica holds the same values.
            return {s: self.strategy.experimental_local_results(sums[s])[0] for s in SUM_KEYS}

        return train_step

    def _make_eval_step(self):
        model = self.model

        def replica_eval(batch):
            features, labels, weights = batch
            outputs = model(features, training=False)
            sums = pretraining_sums(labels, outputs, weights)
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, sums)

        @tf.function
        def eval_step(iterator):
            batch = self._to_replicas(next(iterator))
            sums = self.strategy.run(replica_eval, args=(batch,))
            return {s: self.strategy.experimental_local_results(sums[s])[0] for s in SUM_KEYS}

        return eval_step

    # ------------------------------------------------------------ running

    def learning_rate(self):
        return _as_float(self.optimizer.learning_rate)

    def evaluate(self, dataset_fn, steps, batch_size=None):
        """Mean MLM/NSP loss and accuracy over `steps` batches of a dataset.

        Example:

        >>> trainer.evaluate(eval_dataset_fn, steps=20)["mlm_accuracy"]  # doctest: +SKIP
        """
        batch_size = batch_size or self.config.micro_batch_size
        dataset = self._worker_dataset(dataset_fn, batch_size, repeat=False)
        if distribute.worker_count(self.strategy) > 1:
            # Every worker must run the same number of (collective) steps;
            # shards differ by at most one example, so at most one batch.
            steps = min(int(steps), max(0, int(dataset.cardinality()) - 1))
        iterator = iter(dataset)
        eval_step = self._make_eval_step()
        total = {s: 0.0 for s in SUM_KEYS}
        for _ in range(int(steps)):
            try:
                sums = eval_step(iterator)
            except (StopIteration, tf.errors.OutOfRangeError):
                break
            for s in SUM_KEYS:
                total[s] += _as_float(sums[s])
        result = summarize(total)
        result["sequences"] = int(total["nsp_count"])
        result["predictions"] = int(total["mlm_count"])
        return result

    def train(self, on_step=None):
        """Runs (or resumes) training to `num_train_steps`; returns a history.

        Args:
            on_step: optional `on_step(step, metrics)` called after each step.

        Returns:
            A dict: `losses` (loss of each step run in this process, in order,
            with `first_step`), `resumed_from`, `steps`, `seconds`,
            `steps_per_second`, `sequences_per_second`, `final` (metrics of the
            last logging window), `learning_rate`.
        """
        c = self.config
        iterator = iter(self._worker_dataset(self.dataset_fn, c.micro_batch_size))
        # Keras does not put its dropout RNG states (SeedGenerator
        # variables) in a tf.train.Checkpoint of the model; add them so a
        # resumed run draws the same dropout masks as an uninterrupted one.
        rng = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            step=self.step,
            data=iterator,
            rng=rng,
        )
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
        resumed_from = int(self.step.numpy())
        if latest:
            self._log(f"resumed from {latest} at step {resumed_from}")
        written = distribute.write_dir(self.checkpoint_dir)
        manager = tf.train.CheckpointManager(checkpoint, written, max_to_keep=max(1, c.keep_checkpoints))
        chief = distribute.is_chief()
        writer = (
            tf.summary.create_file_writer(os.path.join(c.output_dir, "summaries"))
            if chief
            else tf.summary.create_noop_writer()
        )
        train_step = self._make_train_step()
        progbar = progress = None
        if self.verbose and sys.stdout.isatty():
            progbar = keras.utils.Progbar(c.num_train_steps, stateful_metrics=list(_SHOWN))
        elif self.verbose:  # logs and CI: a line every --log_steps, and every --progress_seconds between them
            progress = ProgressLines(c.num_train_steps, c.progress_seconds)
        losses = []
        window = {s: 0.0 for s in SUM_KEYS}
        window_start, window_steps = time.perf_counter(), 0
        start = time.perf_counter()
        final, deadline_hit = {}, False
        step = resumed_from
        try:
            while step < c.num_train_steps:
                sums = train_step(iterator)
                step += 1
                sums = {s: _as_float(v) for s, v in sums.items()}
                metrics = summarize(sums)
                losses.append(metrics["loss"])
                for s in SUM_KEYS:
                    window[s] += sums[s]
                window_steps += 1
                if on_step:
                    on_step(step, metrics)
                last = step == c.num_train_steps
                if c.max_minutes and time.perf_counter() - start > 60 * c.max_minutes:
                    deadline_hit = last = True
                if step % max(1, c.log_steps) == 0 or last:
                    elapsed = time.perf_counter() - window_start
                    final = summarize(window)
                    final["learning_rate"] = self.learning_rate()
                    final["steps_per_second"] = window_steps / max(elapsed, 1e-9)
                    final["sequences_per_second"] = final["steps_per_second"] * c.train_batch_size
                    with writer.as_default(step=step):
                        for name, value in final.items():
                            tf.summary.scalar(name, value)
                    writer.flush()
                    if progbar is not None:
                        progbar.update(step, [(k, final[k]) for k in _SHOWN])
                    else:
                        eta = f"  {progress.eta(step)}" if progress is not None else ""
                        self._log(_format_line(step, c.num_train_steps, final) + eta)
                        if progress is not None:
                            progress.mark(step)
                    window = {s: 0.0 for s in SUM_KEYS}
                    window_start, window_steps = time.perf_counter(), 0
                elif progress is not None and progress.due(step):
                    self._log(progress.line(step, metrics["loss"]))
                if step % max(1, c.save_checkpoints_steps) == 0 or last:
                    manager.save(checkpoint_number=step)
                if deadline_hit:
                    break
        finally:
            distribute.cleanup_write_dir(self.checkpoint_dir, written)
        seconds = time.perf_counter() - start
        ran = step - resumed_from
        return {
            "losses": losses,
            "first_step": resumed_from + 1,
            "resumed_from": resumed_from,
            "steps": step,
            "seconds": seconds,
            "steps_per_second": ran / max(seconds, 1e-9),
            "sequences_per_second": ran * c.train_batch_size / max(seconds, 1e-9),
            "final": final,
            "deadline_hit": deadline_hit,
        }

    def save_pretrained(self, directory=None):
        """Exports the keras-hub preset folder (chief only); returns its path."""
        c = self.config
        directory = directory or os.path.join(c.output_dir, "pretrained")
        if not distribute.is_chief():
            return directory
        if not c.vocab_file:
            raise ValueError("save_pretrained needs config.vocab_file")
        os.makedirs(directory, exist_ok=True)
        save_pretrained(self.model, directory, c.vocab_file, c.lowercase)
        return directory

    def _log(self, message):
        if self.verbose:
            print(message, flush=True)


_SHOWN = ("loss", "mlm_accuracy", "nsp_accuracy", "learning_rate", "steps_per_second")


def _format_line(step, total, m):
    return (
        f"step {step}/{total}  loss {m['loss']:.4f}  mlm_loss {m['mlm_loss']:.4f}  "
        f"mlm_acc {m['mlm_accuracy']:.4f}  nsp_loss {m['nsp_loss']:.4f}  "
        f"nsp_acc {m['nsp_accuracy']:.4f}  lr {m['learning_rate']:.3g}  "
        f"{m['steps_per_second']:.2f} steps/s  {m['sequences_per_second']:.1f} seq/s"
    )


# ---------------------------------------------------------------- CLI


def build_parser(prog="python -m kerasbert.train pretrain"):
    """The `pretrain` flags; every one is documented in --help."""
    p = cli.ArgumentParser(
        prog=prog,
        description=(
            "Pretrain BERT (masked LM + next-sentence prediction) from raw text. "
            "Input: BERT format (one sentence per line, blank line between "
            "documents) or one document per line. Resumes automatically from "
            "<output_dir>/checkpoints; writes TensorBoard scalars to "
            "<output_dir>/summaries and the result to <output_dir>/pretrained "
            "(a keras-hub preset: fine-tune with --init_checkpoint)."
        ),
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--input_files", nargs="+", required=True, metavar="PATH", help="training text files or glob patterns"
    )
    g.add_argument("--vocab_file", required=True, help="WordPiece vocab.txt (see python -m kerasbert.train vocab)")
    g.add_argument(
        "--cased", action="store_true", help="keep case and accents (for a cased vocabulary); default uncased"
    )
    g.add_argument(
        "--max_seq_length",
        type=int,
        default=128,
        help="tokens per packed sequence pair, [CLS]/[SEP] included (default 128)",
    )
    g.add_argument(
        "--eval_files",
        nargs="+",
        default=None,
        metavar="PATH",
        help="held-out text files evaluated after training (default: the "
        "--holdout_fraction documents of --input_files, if any)",
    )
    g.add_argument(
        "--eval_steps", type=int, default=50, help="at most this many held-out batches are evaluated (default 50)"
    )
    g.add_argument(
        "--input_format",
        default="auto",
        choices=("auto", "bert", "lines"),
        help="'bert': one sentence per line, blank line between documents; "
        "'lines': one document per line (split into sentences); "
        "'auto': decide per file (default)",
    )
    g.add_argument(
        "--holdout_fraction",
        type=float,
        default=0.0,
        help="fraction of the documents of --input_files held out from training and evaluated at the end (default 0)",
    )
    g.add_argument(
        "--max_predictions_per_seq",
        type=int,
        default=None,
        help="maximum masked positions per sequence (default 15%% of --max_seq_length)",
    )
    g.add_argument("--masked_lm_prob", type=float, default=0.15, help="fraction of tokens masked (default 0.15)")
    g.add_argument(
        "--short_seq_prob", type=float, default=0.1, help="probability of a shorter target length (default 0.1)"
    )
    g.add_argument(
        "--dupe_factor", type=int, default=1, help="corpus passes with different sentence pairings (default 1)"
    )
    g.add_argument("--whole_word_masking", action="store_true", help="mask all WordPieces of a word together")
    m = p.add_argument_group("model")
    m.add_argument(
        "--model_size",
        default="tiny",
        choices=tuple(ENCODER_SIZES),
        help="Google's BERT sizes (default tiny: 2 layers, 128 hidden)",
    )
    m.add_argument("--num_layers", type=int, default=None, help="override the number of transformer layers")
    m.add_argument(
        "--hidden_dim",
        type=int,
        default=None,
        help=f"override the hidden size (heads = hidden/{HEAD_SIZE}, intermediate = {INTERMEDIATE_FACTOR}x)",
    )
    m.add_argument("--dropout", type=float, default=0.1, help="dropout rate (default 0.1)")
    o = p.add_argument_group("optimisation")
    o.add_argument(
        "--train_batch_size",
        type=int,
        default=32,
        help="GLOBAL sequences per optimizer update, over all replicas and accumulation steps (default 32)",
    )
    o.add_argument(
        "--num_train_steps", type=int, default=1000, help="optimizer updates in the whole run (default 1000)"
    )
    o.add_argument("--num_warmup_steps", type=int, default=100, help="linear learning-rate warmup steps (default 100)")
    o.add_argument("--learning_rate", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    o.add_argument(
        "--optimizer",
        default="adamw",
        choices=OPTIMIZERS,
        help="adamw (BERT) or lamb (large batches); no weight decay on LayerNorm and biases",
    )
    o.add_argument("--weight_decay", type=float, default=0.01, help="decoupled weight decay (default 0.01)")
    o.add_argument(
        "--clipnorm",
        type=float,
        default=1.0,
        help="global-norm gradient clipping after the all-reduce; 0 = off (default 1.0)",
    )
    o.add_argument(
        "--gradient_accumulation_steps",
        type=int,
        default=1,
        help="split each update's batch into this many micro-batches and sum their gradients (default 1)",
    )
    o.add_argument(
        "--mixed_precision",
        default="none",
        choices=tuple(MIXED_PRECISION),
        help="float16 (with dynamic loss scaling) or bfloat16 compute; weights stay float32 (default none)",
    )
    o.add_argument(
        "--jit_compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="XLA-compile the forward/backward pass (default on; --no-jit_compile to disable)",
    )
    o.add_argument("--seed", type=int, default=12345, help="seed of initialisation, pair sampling, masking and dropout")
    d = p.add_argument_group("distribution and bookkeeping")
    d.add_argument(
        "--strategy",
        default="default",
        choices=distribute.STRATEGIES,
        help="tf.distribute strategy: default, mirrored (local devices), "
        "multi_worker (cluster from TF_CONFIG), tpu (see --tpu), "
        "one_device",
    )
    d.add_argument("--tpu", default=None, help="TPU name or grpc://address for --strategy tpu")
    d.add_argument(
        "--output_dir", required=True, help="checkpoints/, summaries/, pretrained/ and pretraining_summary.json go here"
    )
    d.add_argument(
        "--save_checkpoints_steps",
        type=int,
        default=1000,
        help="checkpoint every N steps (and at the end) (default 1000)",
    )
    d.add_argument("--keep_checkpoints", type=int, default=3, help="checkpoints kept (default 3)")
    d.add_argument(
        "--log_steps", type=int, default=100, help="progress line and TensorBoard scalars every N steps (default 100)"
    )
    d.add_argument(
        "--max_minutes", type=float, default=None, help="stop (with a checkpoint and export) after this many minutes"
    )
    d.add_argument(
        "--progress_seconds",
        type=float,
        default=30.0,
        help="when stdout is not a terminal: a line with step, loss, steps/s and ETA at least this often, "
        "between the --log_steps lines (default: 30)",
    )
    cli.add_verbose_flag(d)
    return p


def _expand(patterns, flag):
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise cli.UsageError(f"{flag}: no such file {pattern!r} (use {flag} PATH ...)")
        files += matches
    return files


def pipeline_dataset_fn(args, files, holdout_fraction=0.0, split="train", seed=0, num_epochs=None):
    """`dataset_fn(batch_size, num_shards, shard_index)` over the pipeline.

    The corpus is read, tokenized and paired once (`build_instances`), on the
    first call; `dataset_fn.instances()` returns those pairs (building them if
    no dataset was made yet), e.g. to count the sequences per epoch. Both
    raise a `CorpusError` when the files cannot make pairs
    (`NoSequencePairsError` when they make none).
    """
    cache = {}

    def instances():
        if "instances" not in cache:
            cache["preprocessor"] = BertPreprocessor(
                args.vocab_file,
                lowercase=not args.cased,
                sequence_length=args.max_seq_length,
            )
            try:
                cache["instances"] = data.build_instances(
                    files,
                    cache["preprocessor"],
                    max_seq_length=args.max_seq_length,
                    short_seq_prob=args.short_seq_prob,
                    dupe_factor=args.dupe_factor,
                    input_format=args.input_format,
                    holdout_fraction=holdout_fraction,
                    split=split,
                    seed=args.seed,
                )
            except ValueError as e:
                raise CorpusError(files, f"{files}: {e}") from e
            if not len(cache["instances"]):
                raise NoSequencePairsError(files, split)
        return cache["instances"]

    def dataset_fn(batch_size, num_shards, shard_index):
        return data.pretraining_dataset(
            instances(),
            cache["preprocessor"],
            batch_size,
            max_seq_length=args.max_seq_length,
            max_predictions_per_seq=args.max_predictions_per_seq,
            masked_lm_prob=args.masked_lm_prob,
            whole_word_masking=args.whole_word_masking,
            seed=seed,
            num_epochs=num_epochs,
            num_shards=num_shards,
            shard_index=shard_index,
        )

    dataset_fn.instances = instances
    return dataset_fn


def config_from_args(args, vocabulary_size):
    """A `PretrainConfig` from parsed `pretrain` flags."""
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    return PretrainConfig(vocabulary_size=vocabulary_size, lowercase=not args.cased, **values)


def _check_args(args):
    for flag in (
        "train_batch_size",
        "num_train_steps",
        "max_seq_length",
        "gradient_accumulation_steps",
        "save_checkpoints_steps",
        "log_steps",
    ):
        if getattr(args, flag) < 1:
            raise cli.UsageError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    for flag in ("num_layers", "hidden_dim"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise cli.UsageError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.progress_seconds < 0:
        raise cli.UsageError(f"--progress_seconds must be >= 0, got {args.progress_seconds:g}")
    if not 0.0 < args.masked_lm_prob < 1.0:
        raise cli.UsageError(f"--masked_lm_prob must be in (0, 1), got {args.masked_lm_prob}")
    if args.strategy == "tpu" and args.tpu is None:
        raise cli.UsageError("--strategy tpu needs --tpu NAME_OR_ADDRESS")
    if not os.path.isfile(args.vocab_file):
        raise cli.UsageError(f"--vocab_file: no such file {args.vocab_file!r}")


def _usage_error(e, args):
    """The one-line CLI error, naming the flags, for a library error."""
    if isinstance(e, BatchSizeError):
        return cli.UsageError(
            f"--train_batch_size {e.train_batch_size} must be divisible "
            f"by --gradient_accumulation_steps ({e.accumulation_steps}) x replicas "
            f"({e.replicas})"
        )
    if isinstance(e, NoSequencePairsError):
        return cli.UsageError(
            f"no {e.split} sequence pairs in {e.files} (use --input_files with "
            "more text, or a smaller --holdout_fraction)"
        )
    eval_files = _expand(args.eval_files, "--eval_files") if args.eval_files else None
    flag = "--eval_files" if e.files == eval_files else "--input_files"
    return cli.UsageError(f"{flag}: {e}")


def main(args):
    """Runs `pretrain` from parsed flags; returns the exit code."""
    try:
        return _run(args)
    except (BatchSizeError, CorpusError) as e:
        raise _usage_error(e, args) from e


def _run(args):
    _check_args(args)
    files = _expand(args.input_files, "--input_files")
    eval_files = _expand(args.eval_files, "--eval_files") if args.eval_files else None
    try:
        strategy = distribute.get_strategy(args.strategy, tpu=args.tpu)
    except ValueError as e:
        raise cli.UsageError(f"--strategy: {e}") from e
    try:
        vocabulary = load_vocabulary(args.vocab_file)
    except ValueError as e:
        raise cli.UsageError(f"--vocab_file: {e}") from e
    try:
        encoder_config(args.model_size, len(vocabulary), num_layers=args.num_layers, hidden_dim=args.hidden_dim)
    except ValueError as e:
        raise cli.UsageError(f"--hidden_dim: {e}") from e
    config = config_from_args(args, len(vocabulary))
    os.makedirs(args.output_dir, exist_ok=True)
    train_fn = pipeline_dataset_fn(args, files, args.holdout_fraction, "train", args.seed)
    trainer = Pretrainer(config, train_fn, strategy)
    trainer._log(
        f"pretraining {args.model_size} on {len(files)} file(s): "
        f"{strategy.num_replicas_in_sync} replica(s), global batch "
        f"{args.train_batch_size}, {args.num_train_steps} steps"
    )
    history = trainer.train()
    summary = {
        "steps": history["steps"],
        "resumed_from": history["resumed_from"],
        "seconds": round(history["seconds"], 2),
        "steps_per_second": round(history["steps_per_second"], 3),
        "sequences_per_second": round(history["sequences_per_second"], 2),
        "final": history["final"],
        "stopped_by_max_minutes": history["deadline_hit"],
    }
    # Held-out data: fixed masks (own seed), one pass.
    eval_fn = None
    if eval_files:
        eval_fn = pipeline_dataset_fn(args, eval_files, 0.0, "train", args.seed + 1, num_epochs=1)
    elif args.holdout_fraction:
        eval_fn = pipeline_dataset_fn(args, files, args.holdout_fraction, "heldout", args.seed + 1, num_epochs=1)
    if eval_fn is not None:
        summary["eval"] = trainer.evaluate(eval_fn, args.eval_steps)
    exported = trainer.save_pretrained()
    summary["pretrained"] = exported
    if distribute.is_chief():
        with open(os.path.join(args.output_dir, "pretraining_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    trainer._log(_final_summary(summary))
    return 0


def _final_summary(s):
    lines = [
        f"done: {s['steps']} steps ({s['steps'] - s['resumed_from']} in this run, "
        f"resumed from {s['resumed_from']}), {s['seconds']:.1f}s, "
        f"{s['steps_per_second']:.2f} steps/s, {s['sequences_per_second']:.1f} seq/s",
    ]
    if s["final"]:
        lines.append("last window: " + _format_line(s["steps"], s["steps"], s["final"]))
    if "eval" in s:
        e = s["eval"]
        lines.append(
            f"held-out: mlm_acc {e['mlm_accuracy']:.4f} (loss {e['mlm_loss']:.4f}), "
            f"nsp_acc {e['nsp_accuracy']:.4f} over {e['sequences']} sequences"
        )
    lines.append(f"pretrained encoder: {s['pretrained']} (fine-tune with --init_checkpoint)")
    return "\n".join(lines)
