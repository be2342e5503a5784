"""Table batches cut to their longest row (`tables.cut_padding`): only padding is dropped, the logits are
the padded batch's, Keras traces its step once for every length, and training scores the same dev accuracy;
`--mixed_precision bfloat16` trains and exports float32."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, write_polarity_task
from kerasbert.data import tables
from kerasbert.modeling import build_encoder
from kerasbert.preprocessing import BertPreprocessor
from kerasbert.tasks.classification import TaskSpec, build_classifier

VOCAB = REPO / "kerasbert" / "data" / "sample" / "vocab.txt"
# 1 to 30 words: batches of different longest rows, most far below the 64 tokens of the packing length.
WORDS = ("the room was really quite good and the staff " * 4).split()
TEXTS = [" ".join(WORDS[: 1 + (i * 7) % 30]) for i in range(24)]


@pytest.fixture(scope="module")
def preprocessor():
    return BertPreprocessor(str(VOCAB), sequence_length=64)


def _examples(texts, labels=None):
    return tables.Examples(list(texts), None, labels)


def test_batches_lose_only_padding_columns(preprocessor):
    full = list(tables.make_dataset(_examples(TEXTS), preprocessor, batch_size=8, pad_to_sequence_length=True))
    cut = list(tables.make_dataset(_examples(TEXTS), preprocessor, batch_size=8))
    assert len(full) == len(cut) == 3
    for f, c in zip(full, cut):
        real = f["padding_mask"].numpy().sum(axis=1)
        width = c["token_ids"].shape[1]
        assert f["token_ids"].shape[1] == 64
        assert width == min(64, -(-real.max() // 8) * 8)  # longest row, rounded up to a multiple of 8
        assert width < 64  # these batches do not need the packing length
        for name in ("token_ids", "segment_ids", "padding_mask"):
            np.testing.assert_array_equal(c[name].numpy(), f[name].numpy()[:, :width])
        assert not f["padding_mask"].numpy()[:, width:].any()  # what was dropped is padding only
    # Targets ride along unchanged.
    labelled = tables.make_dataset(_examples(TEXTS), preprocessor, np.arange(24, dtype=np.int32), batch_size=8)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in labelled]), np.arange(24))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_logits_of_a_cut_batch_equal_the_padded_batch(preprocessor, pooling):
    keras.utils.set_random_seed(3)
    model = build_classifier(
        build_encoder("tiny", preprocessor.vocabulary_size),
        TaskSpec("classification", ["a", "b", "c"]),
        pooling=pooling,
    )
    full = next(iter(tables.make_dataset(_examples(TEXTS), preprocessor, batch_size=24, pad_to_sequence_length=True)))
    cut = next(iter(tables.make_dataset(_examples(TEXTS), preprocessor, batch_size=24)))
    assert cut["token_ids"].shape[1] == 32 < 64
    padded_logits = model(full, training=False).numpy()
    cut_logits = model(cut, training=False).numpy()
    assert np.abs(padded_logits).max() > 1e-3  # not trivially zero
    np.testing.assert_allclose(cut_logits, padded_logits, atol=1e-5, rtol=0)


def test_training_traces_its_step_once_for_every_batch_length(preprocessor):
    keras.utils.set_random_seed(4)
    model = build_classifier(
        build_encoder("tiny", preprocessor.vocabulary_size), TaskSpec("classification", ["a", "b"])
    )
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = np.arange(24, dtype=np.int32) % 2
    ds = tables.make_dataset(_examples(TEXTS), preprocessor, labels, batch_size=4, shuffle=True, seed=1)
    widths = {int(f["token_ids"].shape[1]) for f, _ in ds}
    assert len(widths) >= 3  # the step does see several lengths
    traced = {"train": [], "predict": []}  # the Python step runs once per trace (graph mode)
    for kind in traced:
        step = getattr(model, f"{kind}_step")

        def counting(data, step=step, seen=traced[kind]):
            features = data[0] if isinstance(data, tuple) else data
            seen.append(tuple(features["token_ids"].shape))
            return step(data)

        setattr(model, f"{kind}_step", counting)
    model.fit(ds.repeat(), steps_per_epoch=12, epochs=2, verbose=0)
    model.predict(tables.make_dataset(_examples(TEXTS), preprocessor, batch_size=4), verbose=0)
    # tf.function traces the first train step twice (it creates the optimizer's variables), with padding or
    # without; then never again, whatever the length: 24 steps, >= 3 lengths. Predict builds on its first batch.
    assert traced["train"] == [(None, None)] * 2
    assert len(traced["predict"]) <= 2 and traced["predict"][-1] == (4, None)


def _finetune(root, name, *flags):
    from conftest import run_finetune

    argv = ["--train_file", root / "train.tsv", "--dev_file", root / "dev.tsv", "--vocab", VOCAB]
    argv += ["--epochs", 2, "--batch_size", 32, "--sequence_length", 32, "--learning_rate", 2e-3, "--seed", 5]
    argv += ["--output_dir", root / name, "--export_dir", root / "exports", "--model_name", name, "--quiet"]
    return run_finetune([*argv, *flags])


@pytest.fixture(scope="module")
def polarity(tmp_path_factory):
    root = tmp_path_factory.mktemp("cut")
    write_polarity_task(root / "train.tsv", 640, seed=1)
    write_polarity_task(root / "dev.tsv", 100, seed=2)
    return root


def test_dev_accuracy_is_the_same_with_and_without_padding(polarity):
    # Dropout off: its random masks have the shape of the batch, so they would differ between the two runs.
    cut = _finetune(polarity, "cut", "--dropout", 0, "--no_export")
    padded = _finetune(polarity, "padded", "--dropout", 0, "--no_export", "--pad_to_sequence_length")
    assert cut["steps"] == padded["steps"] == 40
    assert cut["dev_metrics"]["accuracy"] >= 0.8  # it learned something to compare
    assert cut["dev_metrics"] == pytest.approx(padded["dev_metrics"], abs=1e-9)
    spec = json.loads((polarity / "padded" / "run.json").read_text())
    assert spec["task_config"]["pad_to_sequence_length"] is True


def test_bfloat16_mixed_precision_trains_and_exports_float32(polarity):
    result = _finetune(polarity, "bf16", "--mixed_precision", "bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert result.model.get_layer("logits").compute_dtype == "float32"
    assert result.result.encoder.compute_dtype == "bfloat16" and result.result.encoder.weights[0].dtype == "float32"
    assert result["dev_metrics"]["accuracy"] >= 0.8
    spec = json.loads((polarity / "bf16" / "run.json").read_text())
    assert spec["encoder"]["config"]["dtype"] == "float32" and spec["config"]["mixed_precision"] == "bfloat16"

    # The export computes in float32: its probabilities are those of the float32 rebuild of the run folder.
    from kerasbert.training.finetune import load_run

    rebuilt = load_run(polarity / "bf16")
    assert rebuilt.encoder.compute_dtype == "float32"
    dev = tables.read_examples(str(polarity / "dev.tsv"))
    texts = dev.texts[:16]
    expected = tf.nn.softmax(
        rebuilt.model.predict(tables.make_dataset(_examples(texts), rebuilt.preprocessor), verbose=0)
    )
    served = tf.saved_model.load(result.result.export).signatures["serving_default"](text=tf.constant(texts))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected.numpy(), atol=1e-5)
    # ...and bfloat16 training scored within a few points of it.
    bf16_probs = tf.nn.softmax(
        result.model.predict(tables.make_dataset(_examples(texts), result.preprocessor), verbose=0)
    )
    assert np.abs(bf16_probs.numpy() - expected.numpy()).max() < 0.05
