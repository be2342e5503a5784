"""Cutting padded batches to the columns they use."""

import tensorflow as tf


def cut_to_longest(features, multiple=1):
    """Drops the padding columns that no row of the batch uses.

    Args:
        features: `BertPreprocessor` output (`token_ids`, `segment_ids`,
            `padding_mask`, each `[batch, sequence_length]`).
        multiple: round the cut length up to a multiple of this (bounded by
            the full length), so XLA sees a few shapes instead of one per
            distinct longest row.

    Returns:
        The same dict, each tensor `[batch, length]`.
    """
    mask = features["padding_mask"]
    length = tf.reduce_max(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1))
    length = tf.maximum(length, 1)  # empty batch: reduce_max is INT_MIN
    if multiple > 1:
        length = tf.minimum((length + multiple - 1) // multiple * multiple, tf.shape(mask)[1])
    return {name: value[:, :length] for name, value in features.items()}
