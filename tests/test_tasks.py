"""The task registry and the generic pieces over it: config round trips,
the metadata signature of every export, the programmatic `finetune()`, and
flag choices taken from the code's own constants."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, write_polarity_task
from kerasbert import contract
from kerasbert.tasks import ClassificationTask, EmbeddingTask, RegressionTask, TaskDataError, get_task, task_names

SAMPLE_VOCAB = REPO / "kerasbert" / "data" / "sample" / "vocab.txt"


def test_registry_lists_the_tasks_in_contract_order():
    names = task_names()
    assert names[:3] == [contract.CLASSIFICATION, contract.REGRESSION, contract.EMBEDDING]
    assert set(names) <= set(contract.TASKS)
    assert contract.EMBEDDING not in task_names(trainable_only=True)
    assert task_names(trainable_only=True)[0] == contract.CLASSIFICATION
    assert get_task("classification") is ClassificationTask
    assert get_task("regression") is RegressionTask and get_task("embedding") is EmbeddingTask
    with pytest.raises(TaskDataError, match="--task: unknown task 'nope'"):
        get_task("nope")


def test_config_round_trip_keeps_what_prepare_learned(tmp_path):
    path = write_polarity_task(tmp_path / "t.tsv", 20, seed=1)
    task = ClassificationTask(label_names="bad,good", pooling="mean")
    task.prepare(task.read_examples(path), None)
    config = json.loads(json.dumps(task.get_config()))
    again = ClassificationTask.from_config(config)
    assert again == task and again.class_names == ["negative", "positive"]
    assert again.display_names == ["bad", "good"]
    assert again.metadata() == {
        "class_names": ["bad", "good"],
        "labels": ["negative", "positive"],
        "text_pair": False,
        "pooling": "mean",
    }
    pair = RegressionTask(text_column="a", text_pair_column="b", label_column="s")
    assert pair.text_pair and RegressionTask.from_config(pair.get_config()) == pair
    emb = EmbeddingTask(pooling="max", layer=-2)
    assert EmbeddingTask.from_config(emb.get_config()) == emb
    with pytest.raises(TaskDataError, match="--pooling"):
        EmbeddingTask(pooling="median")
    with pytest.raises(TaskDataError, match="--pooling"):
        ClassificationTask(pooling="max")


def test_task_errors_name_the_flag(tmp_path):
    path = write_polarity_task(tmp_path / "t.tsv", 20, seed=1)
    task = ClassificationTask(labels="negative")
    with pytest.raises(TaskDataError, match=r"not in --labels"):
        task.prepare(task.read_examples(path), None)
    with pytest.raises(TaskDataError, match="--label_names: \\['x'\\] are not classes"):
        t = ClassificationTask(label_names="x=y")
        t.prepare(t.read_examples(path), None)
    reg = RegressionTask()
    with pytest.raises(TaskDataError, match="numbers"):
        reg.prepare(reg.read_examples(path), None)


def test_every_export_has_the_metadata_signature(trained_export):
    loaded = tf.saved_model.load(trained_export["export"])
    assert set(loaded.signatures) == set(contract.signatures_for(contract.CLASSIFICATION))
    raw = loaded.signatures[contract.METADATA_SIGNATURE]()[contract.METADATA].numpy()
    meta = contract.ExportMetadata.from_json(raw)
    assert meta.task == contract.CLASSIFICATION
    assert meta.signatures == {k: v.as_dict() for k, v in contract.signatures_for("classification").items()}
    assert meta.preprocessing == {"sequence_length": 16, "lowercase": True, "vocabulary_size": 911}
    assert meta.task_config["class_names"] == ["negative", "positive"]
    assert meta.extra["dev_metrics"]["accuracy"] >= 0.9 and meta.extra["train_file"] == "train.tsv"
    # The file copy is the same JSON (with the same facts at the top level too).
    with open(os.path.join(trained_export["export"], "assets.extra", "kerasbert.json")) as f:
        assert json.load(f) == json.loads(raw)


def test_programmatic_finetune_without_argparse(tmp_path):
    from kerasbert.training.finetune import FinetuneConfig, FinetuneResult, finetune

    train = write_polarity_task(tmp_path / "train.tsv", 64, seed=5)
    config = FinetuneConfig(
        task=ClassificationTask(label_names=["neg", "pos"]),
        train_file=str(train),
        dev_file=str(train),
        vocab=str(SAMPLE_VOCAB),
        sequence_length=16,
        epochs=1,
        batch_size=16,
        output_dir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "exports"),
        model_name="api",
        verbose=0,
    )
    result = finetune(config)
    assert isinstance(result, FinetuneResult)
    # JSON only in the results; the objects are attributes.
    assert not [k for k in result.results if k.startswith("_")]
    with open(tmp_path / "run" / "results.json") as f:
        assert json.load(f) == json.loads(json.dumps(result.results))
    assert result.export == result.results["export"] == str(tmp_path / "exports" / "api" / "1")
    assert result.task.display_names == ["neg", "pos"] and result.run_dir == str(tmp_path / "run")
    assert set(result.results["dev_metrics"]) == {"accuracy", "f1", "mcc"}
    features = result.preprocessor(tf.constant(["the food was good"]))
    assert result.model(features).shape == (1, 2)
    # The caller's task is not changed by the run.
    assert config.task.class_names == []
    # By name, with options: the same task.
    by_name = FinetuneConfig(task="classification", task_options={"label_names": ["neg", "pos"]})
    from kerasbert.training.finetune import _resolve

    assert _resolve(by_name)[1] == ClassificationTask(label_names=["neg", "pos"])
    with pytest.raises(ValueError, match="--task: embedding has nothing to fine-tune"):
        _resolve(FinetuneConfig(task="embedding"))


def test_fractional_epochs_train_that_many_steps(tmp_path):
    """--epochs 1.5 over 4 batches: 6 steps in 2 Keras epochs of 3, not 8 with the last 2 at learning rate 0."""
    from kerasbert.training.finetune import FinetuneConfig, finetune

    train = write_polarity_task(tmp_path / "train.tsv", 64, seed=5)
    config = FinetuneConfig(
        train_file=str(train),
        vocab=str(SAMPLE_VOCAB),
        sequence_length=16,
        epochs=1.5,
        batch_size=16,
        output_dir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "exports"),
        model_name="half",
        verbose=0,
    )
    result = finetune(config)
    assert result.results["steps"] == 6 and int(result.model.optimizer.iterations.numpy()) == 6


def test_resume_check_names_what_differs():
    from kerasbert.training.finetune import _differences

    spec = {
        "task": "classification",
        "task_config": {"class_names": ["a", "b"]},
        "encoder": {
            "class_name": "GeluBertBackbone",
            "config": {"num_layers": 2, "hidden_dim": 128, "dropout": 0.1, "name": "x"},
        },
        "sequence_length": 16,
    }
    same = json.loads(json.dumps(spec))
    same["encoder"]["config"].update(dropout=0.3, name="y")  # not the architecture
    assert _differences(spec, same) == []
    other = json.loads(json.dumps(spec))
    other.update(task="regression", sequence_length=32)
    other["encoder"]["config"]["hidden_dim"] = 256
    assert _differences(spec, other) == [
        "task classification -> regression",
        "encoder hidden_dim 128 -> 256",
        "sequence_length 16 -> 32",
    ]


def test_flag_choices_come_from_the_code():
    from kerasbert.export import cli as export_cli
    from kerasbert.modeling.encoder import ENCODER_SIZES
    from kerasbert.tasks.classification import FORMATS, HEAD_POOLING
    from kerasbert.tasks.embedding import POOLING_STRATEGIES
    from kerasbert.training import finetune
    from kerasbert.training.distribute import STRATEGIES

    def choices(parser, flag):
        return list(parser._option_string_actions[flag].choices)

    train = finetune.build_parser()
    assert choices(train, "--task") == task_names(trainable_only=True)
    assert choices(train, "--model_size") == [*ENCODER_SIZES, "custom"]
    assert choices(train, "--strategy") == list(STRATEGIES)
    assert choices(train, "--pooling") == list(HEAD_POOLING)
    export = export_cli.build_parser()
    assert choices(export, "--pooling") == list(POOLING_STRATEGIES)
    assert choices(export, "--mode") == [n for n in task_names() if not get_task(n).trainable]
    # Each shared flag is defined once however many tasks add it; its
    # choices are every task's (each task checks its own in from_args).
    flags = [s for a in train._actions for s in a.option_strings]
    assert len(flags) == len(set(flags))
    assert choices(train, "--format")[: len(FORMATS)] == list(FORMATS)
    args = train.parse_args(["--format", choices(train, "--format")[-1]])
    if args.format not in FORMATS:
        with pytest.raises(TaskDataError, match=f"--format {args.format}: classification reads"):
            ClassificationTask.from_args(args)


def test_export_to_a_file_is_one_line(tmp_path, capsys):
    from kerasbert.export import ExportError
    from kerasbert.export import cli as export_cli
    from kerasbert.export.saved_model import check_export_dir

    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ExportError, match="--export_dir: .* is a file, not a folder"):
        check_export_dir(target / "sub", "m")
    code = export_cli.run(["--init_checkpoint", str(tmp_path), "--export_dir", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"error: --export_dir: {target} is a file, not a folder"
    np.testing.assert_equal(target.read_text(), "x")


def test_finetune_result_reads_like_the_results_dict():
    from kerasbert.training.finetune import FinetuneResult

    result = FinetuneResult(results={"dev_metrics": {"accuracy": 1.0}}, model=object())
    assert result["dev_metrics"] == {"accuracy": 1.0}
    with pytest.raises(KeyError):
        result["_model"]
