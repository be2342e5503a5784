"""Encoder sizes follow Google's table and build as keras-hub BertBackbones."""

import numpy as np
import pytest

from kerasbert.modeling import ENCODER_SIZES, build_encoder, encoder_config
from kerasbert.modeling.encoder import derived_dims


@pytest.mark.parametrize(
    "size, layers, hidden, heads, intermediate",
    [
        ("tiny", 2, 128, 2, 512),
        ("mini", 4, 256, 4, 1024),
        ("small", 4, 512, 8, 2048),
        ("medium", 8, 512, 8, 2048),
        ("base", 12, 768, 12, 3072),
        ("large", 24, 1024, 16, 4096),
    ],
)
def test_named_sizes_match_google_table(size, layers, hidden, heads, intermediate):
    config = encoder_config(size)
    assert (config["num_layers"], config["hidden_dim"], config["num_heads"], config["intermediate_dim"]) == (
        layers,
        hidden,
        heads,
        intermediate,
    )
    assert set(ENCODER_SIZES) == {"tiny", "mini", "small", "medium", "base", "large"}


def test_base_has_bert_base_parameter_count():
    # BERT-Base uncased: 109,482,240 parameters (embeddings, 12 layers, pooler).
    assert build_encoder("base", vocabulary_size=30522).count_params() == 109_482_240


def test_tiny_shapes_and_padding_does_not_change_real_positions():
    encoder = build_encoder("tiny", vocabulary_size=100, dropout=0.0)
    ids = np.array([[2, 10, 11, 3, 0, 0], [2, 12, 3, 0, 0, 0]], dtype="int32")
    inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": ids != 0}
    out = encoder(inputs)
    assert out["sequence_output"].shape == (2, 6, 128)
    assert out["pooled_output"].shape == (2, 128)
    # The same sentence with less padding gives the same vectors.
    short = {k: v[:, :4] for k, v in inputs.items()}
    np.testing.assert_allclose(encoder(short)["sequence_output"][0], out["sequence_output"][0, :4], atol=1e-5)


def test_custom_sizes_and_errors():
    config = encoder_config("custom", 50, num_layers=3, hidden_dim=96, num_heads=3)
    assert (config["num_layers"], config["hidden_dim"], config["intermediate_dim"]) == (3, 96, 384)
    assert encoder_config("tiny", 50, num_layers=1)["num_layers"] == 1
    with pytest.raises(ValueError, match="unknown encoder size"):
        encoder_config("huge")
    with pytest.raises(ValueError, match="needs"):
        encoder_config("custom")
    with pytest.raises(ValueError, match="divisible"):
        encoder_config("tiny", hidden_dim=100, num_heads=3)


def test_overriding_hidden_dim_re_derives_heads_and_intermediate_size():
    # The rule (heads = hidden/64, intermediate = 4 x hidden) is one function.
    assert derived_dims(128) == (2, 512)
    assert derived_dims(32) == (1, 128)
    for shape in ENCODER_SIZES.values():
        assert (shape.num_heads, shape.intermediate_dim) == derived_dims(shape.hidden_dim)
    config = encoder_config("tiny", hidden_dim=256)
    assert (config["num_layers"], config["hidden_dim"], config["num_heads"], config["intermediate_dim"]) == (
        2,
        256,
        4,
        1024,
    )
    # Given explicitly, they win; None (an unset flag) means "derive".
    config = encoder_config("tiny", hidden_dim=256, num_heads=8, intermediate_dim=300)
    assert (config["num_heads"], config["intermediate_dim"]) == (8, 300)
    config = encoder_config("base", hidden_dim=512, num_heads=None, intermediate_dim=None)
    assert (config["num_layers"], config["num_heads"], config["intermediate_dim"]) == (12, 8, 2048)
    # Overriding only the layers keeps the named size's shape.
    config = encoder_config("base", num_layers=2)
    assert (config["num_heads"], config["intermediate_dim"]) == (12, 3072)
    with pytest.raises(ValueError, match="num_heads defaults to hidden_dim // 64"):
        encoder_config("tiny", hidden_dim=200)


def test_pretrainer_uses_the_same_rule():
    from kerasbert.training.pretrain import PretrainConfig, Pretrainer

    config = PretrainConfig(
        output_dir="unused", vocabulary_size=50, hidden_dim=64, num_layers=1, max_seq_length=16, jit_compile=False
    )
    backbone = Pretrainer(config, dataset_fn=None, verbose=False).backbone
    assert (backbone.num_layers, backbone.hidden_dim, backbone.num_heads, backbone.intermediate_dim) == (1, 64, 1, 256)
