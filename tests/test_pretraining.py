"""Pretraining model and loop: tied MLM head, masked-only losses, learning,
gradient accumulation, mixed precision, the exported preset, the CLI.

Everything runs in-process on a tiny generated corpus (`write_corpus`) with
the real input pipeline (`kerasbert.data.pretraining`) and a 2-layer model.
"""

import json
import random
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasbert import cli
from kerasbert.modeling.encoder import build_encoder
from kerasbert.tasks.pretraining import (
    build_pretraining_model,
    head_weights,
    load_head_weights,
    pretraining_loss,
    pretraining_sums,
)
from kerasbert.training import pretrain

WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_corpus(directory, documents=80, seed=0):
    """Writes a learnable BERT-format corpus + its vocab; returns both paths.

    Each document repeats one word (4-9 times per sentence, then "."), so a
    masked word is predictable from any other word of its segment, and a
    true next sentence has the same word while a random one (almost always)
    has another: both heads have something to learn in a few dozen steps.
    """
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        word = rng.choice(WORDS)
        for _ in range(rng.randint(4, 8)):
            lines.append(" ".join([word] * rng.randint(4, 9)) + " .")
        lines.append("")
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + ["."] + WORDS) + "\n")
    return corpus, vocab


def pretrain_argv(corpus, vocab, output_dir, *extra):
    """`pretrain` flags for a tiny, fast, deterministic (dropout 0) run."""
    argv = [
        "--input_files",
        corpus,
        "--vocab_file",
        vocab,
        "--output_dir",
        output_dir,
        "--max_seq_length",
        32,
        "--train_batch_size",
        8,
        "--num_train_steps",
        4,
        "--num_warmup_steps",
        1,
        "--learning_rate",
        1e-3,
        "--dropout",
        0,
        "--log_steps",
        1,
        "--no-jit_compile",
        *extra,
    ]
    return [str(a) for a in argv]


def make_trainer(tmp_path, *extra, name="run"):
    corpus, vocab = write_corpus(tmp_path)
    args = pretrain.build_parser().parse_args(pretrain_argv(corpus, vocab, tmp_path / name, *extra))
    config = pretrain.config_from_args(args, len(SPECIALS) + 1 + len(WORDS))
    train_fn = pretrain.pipeline_dataset_fn(args, [str(corpus)], args.holdout_fraction, "train", args.seed)
    trainer = pretrain.Pretrainer(config, train_fn, verbose=False)
    return trainer, args


def _features(batch=2, length=8, predictions=3, vocabulary=30, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(5, vocabulary, (batch, length)).astype("int32"),
        "segment_ids": np.zeros((batch, length), "int32"),
        "padding_mask": np.ones((batch, length), bool),
        "mask_positions": rng.integers(1, length, (batch, predictions)).astype("int32"),
    }


def test_mlm_head_is_tied_to_token_embedding_with_per_token_bias():
    keras.utils.set_random_seed(1)
    backbone = build_encoder("tiny", 30, dropout=0.0)
    model = build_pretraining_model(backbone)
    head = model.get_layer("mlm_head")
    # Give the biases non-trivial values so the check covers them.
    head._bias.assign(np.linspace(-1, 1, 30).astype("float32"))
    features = _features()
    outputs = model(features)

    sequence = backbone({k: features[k] for k in ("token_ids", "segment_ids", "padding_mask")})[
        "sequence_output"
    ].numpy()
    gathered = np.take_along_axis(sequence, features["mask_positions"][..., None], 1)
    w = head_weights(model)
    h = gathered @ w["mlm_dense_kernel"] + w["mlm_dense_bias"]
    h = keras.activations.gelu(h, approximate=False).numpy()
    mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mean) / np.sqrt(var + 1e-12) * w["mlm_layer_norm_gamma"] + w["mlm_layer_norm_beta"]
    embeddings = backbone.token_embedding.embeddings.numpy()
    expected = h @ embeddings.T + w["mlm_output_bias"]
    np.testing.assert_allclose(outputs["mlm"].numpy(), expected, atol=1e-4)
    assert outputs["mlm"].shape == (2, 3, 30) and outputs["nsp"].shape == (2, 2)
    # No separate output matrix: the head owns only dense/LayerNorm/bias.
    own = [v for v in head.trainable_weights if v is not backbone.token_embedding.embeddings]
    assert sorted(tuple(v.shape) for v in own) == [(30,), (128,), (128,), (128,), (128, 128)]
    assert head.token_embedding is backbone.token_embedding


def test_losses_and_accuracy_count_masked_positions_only():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 7)).astype("float32")
    nsp_logits = rng.normal(size=(2, 2)).astype("float32")
    labels = rng.integers(0, 7, (2, 4))
    weights = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], "float32")
    nsp = np.array([0, 1])
    sums = pretraining_sums(
        {"mlm": labels, "nsp": nsp},
        {"mlm": logits, "nsp": nsp_logits},
        {"mlm": weights, "nsp": np.ones(2, "float32")},
    )
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    xent = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
    real = weights > 0
    np.testing.assert_allclose(float(sums["mlm_loss"]), xent[real].sum(), rtol=1e-5)
    assert float(sums["mlm_count"]) == 3.0
    assert float(sums["mlm_correct"]) == (logits.argmax(-1) == labels)[real].sum()
    nsp_log_p = nsp_logits - np.log(np.exp(nsp_logits).sum(-1, keepdims=True))
    nsp_xent = -nsp_log_p[[0, 1], nsp].mean()
    np.testing.assert_allclose(float(pretraining_loss(sums)), xent[real].mean() + nsp_xent, rtol=1e-5)
    # Labels and logits at padding predictions do not matter.
    labels2, logits2 = labels.copy(), logits.copy()
    labels2[~real] = 0
    logits2[~real] = 99.0
    sums2 = pretraining_sums(
        {"mlm": labels2, "nsp": nsp},
        {"mlm": logits2, "nsp": nsp_logits},
        {"mlm": weights, "nsp": np.ones(2, "float32")},
    )
    assert float(sums2["mlm_loss"]) == pytest.approx(float(sums["mlm_loss"]))


def test_pretraining_learns_the_corpus(tmp_path):
    trainer, args = make_trainer(
        tmp_path,
        "--num_train_steps",
        40,
        "--num_warmup_steps",
        4,
        "--learning_rate",
        5e-3,
        "--train_batch_size",
        16,
        "--holdout_fraction",
        0.2,
    )
    history = trainer.train()
    assert history["steps"] == 40
    first, last = np.mean(history["losses"][:5]), np.mean(history["losses"][-5:])
    assert last < first - 1.0, (first, last)
    eval_fn = pretrain.pipeline_dataset_fn(args, args.input_files, 0.2, "heldout", args.seed + 1, num_epochs=1)
    result = trainer.evaluate(eval_fn, steps=10)
    # Baseline: always predict the most frequent masked token.
    counts = np.zeros(len(SPECIALS) + 1 + len(WORDS))
    for _, labels, weights in eval_fn(16, 1, 0).take(10):
        np.add.at(counts, labels["mlm"].numpy()[weights["mlm"].numpy() > 0], 1)
    assert result["predictions"] == counts.sum() > 50
    baseline = counts.max() / counts.sum()
    assert result["mlm_accuracy"] > max(0.6, 2 * baseline), (result, baseline)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """4 float32 steps, no accumulation: losses and final weights."""
    trainer, _ = make_trainer(tmp_path_factory.mktemp("reference"))
    losses = trainer.train()["losses"]
    return losses, [v.numpy() for v in trainer.model.weights]


def test_gradient_accumulation_equals_the_full_batch(tmp_path, reference_run):
    losses, weights = reference_run
    accumulated, _ = make_trainer(tmp_path, "--gradient_accumulation_steps", 2)
    assert accumulated.config.micro_batch_size == 4
    b = accumulated.train()["losses"]
    assert len(losses) == len(b) == 4
    np.testing.assert_allclose(losses, b, rtol=2e-5)
    assert losses[0] != losses[-1]  # the model did change
    for x, y in zip(weights, accumulated.model.weights):
        np.testing.assert_allclose(x, y.numpy(), atol=2e-5)


def test_mixed_float16_uses_loss_scaling_and_float32_weights(tmp_path, reference_run):
    mixed, _ = make_trainer(tmp_path, "--mixed_precision", "float16")
    assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)
    assert mixed.model.get_layer("mlm_head").compute_dtype == "float16"
    assert all(v.dtype == "float32" for v in mixed.model.trainable_weights)
    assert keras.config.dtype_policy().name == "float32"  # restored
    b = mixed.train()["losses"]
    assert np.all(np.isfinite(b))
    np.testing.assert_allclose(reference_run[0], b, atol=2e-2)


def test_lamb_and_bfloat16_train(tmp_path):
    trainer, _ = make_trainer(
        tmp_path,
        "--optimizer",
        "lamb",
        "--mixed_precision",
        "bfloat16",
        "--num_train_steps",
        6,
        "--learning_rate",
        5e-3,
    )
    assert type(trainer.optimizer).__name__ == "Lamb"
    losses = trainer.train()["losses"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_pretrain_command_exports_a_loadable_preset(tmp_path):
    corpus, vocab = write_corpus(tmp_path)
    out = tmp_path / "out"
    code = pretrain.main(
        pretrain.build_parser().parse_args(
            pretrain_argv(
                corpus, vocab, out, "--holdout_fraction", 0.2, "--num_train_steps", 3, "--save_checkpoints_steps", 2
            )
        )
    )
    assert code == 0
    summary = json.loads((out / "pretraining_summary.json").read_text())
    assert summary["steps"] == 3 and 0.0 <= summary["eval"]["mlm_accuracy"] <= 1.0
    assert (out / "summaries").is_dir() and any((out / "summaries").iterdir())
    pretrained = out / "pretrained"

    from kerasbert.modeling.checkpoints import assign_mlm_head, assign_nsp_head, load_checkpoint

    ckpt = load_checkpoint(pretrained)
    assert ckpt.format == "keras_hub" and ckpt.lowercase is True
    assert open(ckpt.vocabulary_path).read().split() == open(vocab).read().split()
    heads = load_head_weights(pretrained / "pretraining_heads.weights.h5")
    assert set(heads) == {
        "mlm_dense_kernel",
        "mlm_dense_bias",
        "mlm_layer_norm_gamma",
        "mlm_layer_norm_beta",
        "mlm_output_bias",
        "nsp_kernel",
        "nsp_bias",
    }
    # The reloaded encoder + heads reproduce the trained model.
    trainer_args = pretrain.build_parser().parse_args(pretrain_argv(corpus, vocab, out))
    trained = pretrain.Pretrainer(
        pretrain.config_from_args(trainer_args, ckpt.backbone.vocabulary_size),
        None,
        verbose=False,
    )
    tf.train.Checkpoint(model=trained.model).restore(
        tf.train.latest_checkpoint(str(out / "checkpoints"))
    ).expect_partial()
    reloaded = build_pretraining_model(ckpt.backbone)
    assign_mlm_head(reloaded.get_layer("mlm_head"), heads)
    assign_nsp_head(reloaded.get_layer("nsp_head"), heads)
    features = _features(vocabulary=ckpt.backbone.vocabulary_size)
    for key in ("mlm", "nsp"):
        np.testing.assert_allclose(
            reloaded(features)[key].numpy(),
            trained.model(features)[key].numpy(),
            atol=1e-5,
        )


def test_help_documents_every_flag_and_bad_flags_are_one_line_errors(tmp_path, capsys):
    parser = pretrain.build_parser()
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert undocumented == []
    text = parser.format_help()
    for flag in (
        "--strategy",
        "--gradient_accumulation_steps",
        "--mixed_precision",
        "--whole_word_masking",
        "--jit_compile",
        "--tpu",
        "--max_minutes",
    ):
        assert flag in text
    from kerasbert import train

    corpus, vocab = write_corpus(tmp_path)
    argv = ["pretrain", *pretrain_argv(corpus, tmp_path / "missing.txt", tmp_path / "o")]
    assert cli.run(train.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --vocab_file") and "\n" not in err
    argv = [
        "pretrain",
        *pretrain_argv(corpus, vocab, tmp_path / "o", "--train_batch_size", 6, "--gradient_accumulation_steps", 4),
    ]
    assert cli.run(train.main, argv) == 2
    assert capsys.readouterr().err == (
        "error: --train_batch_size 6 must be divisible by --gradient_accumulation_steps (4) x replicas (1)\n"
    )
    argv = ["pretrain", *pretrain_argv(corpus, vocab, tmp_path / "o", "--hidden_dim", 200)]
    assert cli.run(train.main, argv) == 2
    assert capsys.readouterr().err.startswith("error: --hidden_dim: hidden_dim 200 is not divisible by num_heads 3")
    one_document = tmp_path / "one.txt"
    one_document.write_text("alpha alpha . alpha alpha alpha .\n")
    argv = ["pretrain", *pretrain_argv(one_document, vocab, tmp_path / "o")]
    assert cli.run(train.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --input_files: ") and "at least two" in err
    assert err.count("\n") == 1
    argv = ["pretrain", *pretrain_argv(corpus, vocab, tmp_path / "o", "--eval_files", one_document)]
    argv[argv.index("--num_train_steps") + 1] = "1"
    assert cli.run(train.main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --eval_files: ") and "at least two" in err


def test_library_errors_are_value_errors_without_flag_names(tmp_path):
    config = pretrain.PretrainConfig(
        output_dir=str(tmp_path), vocabulary_size=30, train_batch_size=6, gradient_accumulation_steps=4
    )
    with pytest.raises(pretrain.BatchSizeError) as raised:
        pretrain.Pretrainer(config, dataset_fn=None, verbose=False)
    assert isinstance(raised.value, ValueError) and not isinstance(raised.value, cli.UsageError)
    assert str(raised.value) == (
        "train_batch_size 6 must be divisible by gradient_accumulation_steps (4) x replicas (1)"
    )
    corpus, vocab = write_corpus(tmp_path, documents=2)
    args = pretrain.build_parser().parse_args(pretrain_argv(corpus, vocab, tmp_path / "o"))
    dataset_fn = pretrain.pipeline_dataset_fn(args, [str(corpus)], 0.5, "heldout")
    with pytest.raises(pretrain.CorpusError, match="at least two") as raised:
        dataset_fn.instances()
    assert isinstance(raised.value, ValueError) and "--" not in str(raised.value)
    # The CLI message names the flags.
    error = pretrain._usage_error(pretrain.NoSequencePairsError(["x.txt"], "heldout"), args)
    assert str(error) == (
        "no heldout sequence pairs in ['x.txt'] (use --input_files with more text, or a smaller --holdout_fraction)"
    )


def test_losses_and_tied_gradients_equal_transformers_bert_for_pretraining(tmp_path):
    """Google's objective, checked against transformers' `BertForPreTraining`: the same random weights in
    both, the same masked batch from our pipeline, and the training loop's own loss function (`_grad_fn`).
    Ours gathers the masked positions and averages over the real ones (weight 1.0; padding predictions
    0.0); HF scores every position with labels -100 except the masked ones. The MLM mean, the NSP mean and
    their sum must agree within 1e-5; the gradients of the tied token embedding (input AND output matrix)
    and of the MLM output bias must agree to float32 rounding."""
    torch = pytest.importorskip("torch", reason="torch (test-only peer) is not installed")
    transformers = pytest.importorskip("transformers", reason="transformers (test-only peer) is not installed")
    from kerasbert.modeling.checkpoints import assign_mlm_head, assign_nsp_head, load_checkpoint

    trainer, args = make_trainer(tmp_path, "--train_batch_size", 16)
    vocabulary = len(SPECIALS) + 1 + len(WORDS)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=vocabulary,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=512,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-12,
        initializer_range=0.2,  # big enough for losses and gradients far from their init values
    )
    hf = transformers.BertForPreTraining(config).eval()
    assert hf.cls.predictions.decoder.weight is hf.bert.embeddings.word_embeddings.weight  # tied in HF too
    with torch.no_grad():  # a non-zero output bias, so the check covers it
        hf.cls.predictions.bias.copy_(torch.linspace(-1, 1, vocabulary))
    hf.save_pretrained(tmp_path / "hf")
    shutil.copy(args.vocab_file, tmp_path / "hf" / "vocab.txt")
    ckpt = load_checkpoint(tmp_path / "hf")
    trainer.backbone.set_weights(ckpt.backbone.get_weights())
    assign_mlm_head(trainer.model.get_layer("mlm_head"), ckpt.heads)
    assign_nsp_head(trainer.model.get_layer("nsp_head"), ckpt.heads)

    batch = next(iter(trainer.dataset_fn(16, 1, 0)))
    features, labels, weights = tf.nest.map_structure(lambda t: t.numpy(), batch)
    per_row = weights["mlm"].sum(1)
    assert per_row.min() >= 1 and per_row.min() < per_row.max()  # rows weigh differently: a per-row mean would differ
    assert weights["mlm"].min() == 0  # and there are padding predictions to leave out

    grads, sums = trainer._grad_fn()(
        batch, tf.reduce_sum(batch[2]["mlm"]), tf.reduce_sum(batch[2]["nsp"]), tf.constant(1.0)
    )
    ours = {k: float(v) for k, v in sums.items()}
    ours_mlm, ours_nsp = ours["mlm_loss"] / ours["mlm_count"], ours["nsp_loss"] / ours["nsp_count"]

    hf_labels = np.full(features["token_ids"].shape, -100, np.int64)
    rows, slots = np.nonzero(weights["mlm"])
    hf_labels[rows, features["mask_positions"][rows, slots]] = labels["mlm"][rows, slots]
    assert (hf_labels != -100).sum() == ours["mlm_count"]  # distinct positions: nothing overwritten
    out = hf(
        input_ids=torch.tensor(features["token_ids"], dtype=torch.long),
        token_type_ids=torch.tensor(features["segment_ids"], dtype=torch.long),
        attention_mask=torch.tensor(features["padding_mask"], dtype=torch.long),
        labels=torch.tensor(hf_labels),
        next_sentence_label=torch.tensor(labels["nsp"], dtype=torch.long),
    )
    xent = torch.nn.CrossEntropyLoss()  # ignore_index -100: the mean over the masked positions
    with torch.no_grad():
        hf_mlm = float(xent(out.prediction_logits.reshape(-1, vocabulary), torch.tensor(hf_labels).reshape(-1)))
        hf_nsp = float(xent(out.seq_relationship_logits, torch.tensor(labels["nsp"], dtype=torch.long)))
    assert ours_mlm > 1.0 and ours_nsp > 0.1  # far from a trivially zero loss
    assert abs(ours_mlm - hf_mlm) < 1e-5, (ours_mlm, hf_mlm)
    assert abs(ours_nsp - hf_nsp) < 1e-5, (ours_nsp, hf_nsp)
    total = float(pretraining_loss(sums))
    assert abs(total - out.loss.item()) < 1e-5, (total, out.loss.item())

    out.loss.backward()
    variables = trainer.model.trainable_variables
    by_id = {id(v): g.numpy() for v, g in zip(variables, grads)}
    embedding = by_id[id(trainer.backbone.token_embedding.embeddings)]
    hf_embedding = hf.bert.embeddings.word_embeddings.weight.grad.numpy()
    assert np.abs(hf_embedding).max() > 1e-3
    # float32 sums in another order: ~1e-4 relative on the largest entries (up to ~0.7 at this init).
    np.testing.assert_allclose(embedding, hf_embedding, rtol=1e-4, atol=1e-5)
    bias = by_id[id(trainer.model.get_layer("mlm_head")._bias)]
    np.testing.assert_allclose(bias, hf.cls.predictions.bias.grad.numpy(), atol=1e-6)
