"""BERT's optimiser: AdamW (or LAMB) with linear warmup and linear decay.

Built on Keras 3's own `AdamW`/`Lamb` optimisers, which already carry weight
decay exclusion, global-norm clipping and gradient accumulation; what BERT
adds is the learning-rate schedule and the rule that LayerNorm parameters and
biases are not decayed.
"""

import keras

# Variable-name fragments excluded from weight decay, as in google-research/bert
# (`exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"]`). Keras
# names LayerNorm parameters gamma/beta and Dense biases bias.
NO_DECAY_NAMES = ["bias", "gamma", "beta", "LayerNorm", "layer_norm"]

OPTIMIZERS = ("adamw", "lamb")


@keras.saving.register_keras_serializable(package="kerasbert")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then linear decay
    to `end_fraction * peak` at `total_steps` (BERT's schedule).

    Example:

    >>> schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
    >>> [round(float(schedule(s)), 6) for s in (0, 5, 10, 55, 100)]
    [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """

    def __init__(self, peak, total_steps, warmup_steps=0, end_fraction=0.0):
        self.peak = float(peak)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, int(warmup_steps))
        self.end_fraction = float(end_fraction)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        warmup = ops.cast(self.warmup_steps, "float32")
        total = ops.cast(self.total_steps, "float32")
        warm_lr = self.peak * step / ops.maximum(warmup, 1.0)
        progress = ops.clip((step - warmup) / ops.maximum(total - warmup, 1.0), 0.0, 1.0)
        decay_lr = self.peak * (1.0 - (1.0 - self.end_fraction) * progress)
        return ops.where(step < warmup, warm_lr, decay_lr)

    def get_config(self):
        return dict(
            peak=self.peak,
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
            end_fraction=self.end_fraction,
        )


def create_optimizer(
    learning_rate,
    total_steps,
    warmup_steps=0,
    optimizer="adamw",
    weight_decay=0.01,
    clipnorm=1.0,
    gradient_accumulation_steps=None,
    epsilon=1e-6,
):
    """Creates BERT's optimiser.

    Args:
        learning_rate: peak learning rate.
        total_steps: optimiser steps in the whole run (decay reaches 0 there).
        warmup_steps: linear warmup steps.
        optimizer: "adamw" (BERT) or "lamb" (large-batch pretraining).
        weight_decay: decoupled weight decay; not applied to biases and
            LayerNorm parameters.
        clipnorm: global-norm gradient clipping (BERT uses 1.0); None for off.
        gradient_accumulation_steps: accumulate gradients over this many
            batches before each update (None or 1: off).
        epsilon: Adam epsilon (BERT uses 1e-6).

    Returns:
        A `keras.optimizers.Optimizer`.

    Example:

    >>> opt = create_optimizer(2e-5, total_steps=1000, warmup_steps=100)
    >>> type(opt).__name__
    'AdamW'
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    schedule = WarmupLinearDecay(learning_rate, total_steps, warmup_steps)
    accumulation = (
        int(gradient_accumulation_steps)
        if gradient_accumulation_steps and int(gradient_accumulation_steps) > 1
        else None
    )
    common = dict(
        learning_rate=schedule,
        weight_decay=weight_decay,
        epsilon=epsilon,
        global_clipnorm=clipnorm,
        gradient_accumulation_steps=accumulation,
    )
    if optimizer == "adamw":
        opt = keras.optimizers.AdamW(beta_1=0.9, beta_2=0.999, **common)
    else:
        opt = keras.optimizers.Lamb(beta_1=0.9, beta_2=0.999, **common)
    opt.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    return opt


def expect_reduced_gradients(optimizer):
    """Makes a Keras optimiser take gradients that are ALREADY all-reduced.

    Under `tf.distribute`, Keras 3 optimisers sum gradients over replicas
    inside `apply()`, after clipping them (and after accumulating them), so
    global-norm clipping sees one replica's partial gradient. A training loop
    that all-reduces (then clips) itself calls this so the optimiser does not
    sum a second time; Model Garden's BERT did the same with
    `experimental_aggregate_gradients=False` in Keras 2. Outside a
    distribution strategy it changes nothing.

    Args:
        optimizer: a Keras optimiser (not yet wrapped in a
            `LossScaleOptimizer`; wrapping afterwards is fine).

    Returns:
        The same optimiser.

    Example:

    >>> opt = expect_reduced_gradients(create_optimizer(1e-4, total_steps=10))
    >>> opt._all_reduce_sum_gradients([(1.0, "v")])
    [(1.0, 'v')]
    """
    optimizer._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)
    return optimizer
