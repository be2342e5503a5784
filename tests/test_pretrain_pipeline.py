"""The README's "Pretrain your own BERT" commands, chained: vocab -> pretrain ->
fine-tune from the result (tiny sizes, in-process)."""

import re

import numpy as np

from conftest import run_finetune, write_polarity_task
from kerasbert import train


def _corpus(tmp_path):
    """BERT format: the polarity sentences, five to a document."""
    task = write_polarity_task(tmp_path / "unlabelled.tsv", 400, seed=7)
    sentences = [line.split("\t")[0] for line in task.read_text().splitlines()[1:]]
    corpus = tmp_path / "corpus" / "part-0.txt"
    corpus.parent.mkdir()
    documents = [sentences[i : i + 5] for i in range(0, len(sentences), 5)]
    corpus.write_text("\n\n".join("\n".join(d) for d in documents) + "\n")
    return corpus


def test_vocab_then_pretrain_then_finetune_from_it(tmp_path, capsys):
    corpus = _corpus(tmp_path)
    vocab = tmp_path / "vocab.txt"
    runs = tmp_path / "runs" / "bert"
    # 1. python -m kerasbert.train vocab ...
    assert train.main(["vocab", "--input_files", str(corpus), "--output_file", str(vocab), "--vocab_size", "200"]) == 0
    tokens = vocab.read_text().split("\n")
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"good", "terrible", "service"} <= set(tokens)
    # 2. python -m kerasbert.train pretrain ...
    assert (
        train.main(
            [
                "pretrain",
                "--input_files",
                str(corpus),
                "--vocab_file",
                str(vocab),
                "--output_dir",
                str(runs),
                "--model_size",
                "tiny",
                "--train_batch_size",
                "16",
                "--num_train_steps",
                "30",
                "--num_warmup_steps",
                "3",
                "--max_seq_length",
                "32",
                "--learning_rate",
                "1e-3",
                "--holdout_fraction",
                "0.05",
                "--log_steps",
                "1000",
                "--progress_seconds",
                "0",
            ]
        )
        == 0
    )
    pretrained = runs / "pretrained"
    # stdout is not a terminal: a progress line after every step (--progress_seconds 0; the first step only
    # starts the clock), and the --log_steps line at the end, both with an ETA.
    out = capsys.readouterr().out
    lines = re.findall(r"^step (\d+)/30 \(\d+%\)  loss (\d+\.\d{4})  (\d+\.\d\d) steps/s  ETA (\w+)$", out, re.M)
    assert [int(step) for step, *_ in lines] == list(range(2, 30)), out
    assert all(
        float(loss) > 0 and float(rate) > 0 and re.fullmatch(r"(\d+m)?\d+s", eta) for _, loss, rate, eta in lines
    )
    assert re.search(r"^step 30/30  loss .* steps/s .* seq/s  ETA 0s$", out, re.M), out

    from kerasbert.modeling.checkpoints import load_checkpoint

    position = load_checkpoint(pretrained).backbone.position_embedding.position_embeddings.numpy()
    # 3. python -m kerasbert.train --init_checkpoint runs/bert/pretrained ...
    data = tmp_path / "task"
    data.mkdir()
    results = run_finetune(
        [
            "--init_checkpoint",
            pretrained,
            "--train_file",
            write_polarity_task(data / "train.tsv", 320, seed=1),
            "--dev_file",
            write_polarity_task(data / "dev.tsv", 100, seed=2),
            "--epochs",
            8,
            "--sequence_length",
            16,
            "--learning_rate",
            1e-3,
            "--output_dir",
            tmp_path / "finetune",
            "--no_export",
            "--quiet",
        ]
    )
    assert results["dev_metrics"]["accuracy"] >= 0.9
    assert (
        f"loaded kerasbert pretraining output checkpoint from {pretrained}: 2 layers x 128, gelu, "
        "uncased, MLM/NSP heads\n" in capsys.readouterr().out
    )
    # Fine-tuning started from the pretrained encoder: position rows the
    # 16-token fine-tuning never reads keep their pretrained values (up to
    # AdamW's decoupled weight decay), far from any fresh initialisation.
    encoder = next(x for x in results.model.layers if hasattr(x, "position_embedding"))
    tuned = encoder.position_embedding.position_embeddings.numpy()
    np.testing.assert_allclose(tuned[16:32], position[16:32], rtol=0.02, atol=1e-4)
