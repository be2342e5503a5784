"""The classification head: Google's pooled-[CLS] head and the mean-pooling option."""

import numpy as np
import pytest

from kerasbert.modeling import build_encoder
from kerasbert.tasks import TaskSpec, build_classifier


def _inputs(ids, length):
    ids = np.asarray(ids, "int32")
    token_ids = np.zeros((len(ids), length), "int32")
    token_ids[:, : ids.shape[1]] = ids
    return {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": token_ids != 0,
    }


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_head_ignores_padding(pooling):
    encoder = build_encoder("tiny", 50, dropout=0.0)
    model = build_classifier(encoder, TaskSpec("classification", ["a", "b", "c"]), pooling=pooling)
    ids = [[2, 7, 9, 11, 3], [2, 8, 3, 0, 0]]
    short, long = model(_inputs(ids, 5)), model(_inputs(ids, 12))
    assert short.shape == (2, 3)
    np.testing.assert_allclose(short.numpy(), long.numpy(), atol=1e-5)


def test_mean_head_reads_the_mean_of_real_tokens_not_the_pooler():
    encoder = build_encoder("tiny", 50, dropout=0.0)
    model = build_classifier(encoder, TaskSpec("regression"), pooling="mean")
    x = _inputs([[2, 7, 9, 3, 0, 0]], 6)
    sequence = encoder(x)["sequence_output"].numpy()[0, :4]
    dense = model.get_layer("score_dense")
    kernel, bias = (w.numpy() for w in dense.weights)
    expected = sequence.mean(0) @ kernel[:, 0] + bias[0]
    np.testing.assert_allclose(model(x).numpy(), [expected], rtol=1e-5, atol=1e-6)
    # The pooler is not in the mean head's path: changing it changes nothing.
    pooler = encoder.get_layer("pooled_dense")
    pooler.kernel.assign(pooler.kernel.numpy() * 3.0)
    np.testing.assert_allclose(model(x).numpy(), [expected], rtol=1e-5, atol=1e-6)


def test_unknown_pooling_is_an_error():
    with pytest.raises(ValueError, match="pooling must be one of"):
        build_classifier(build_encoder("tiny", 50), TaskSpec("regression"), pooling="max")
