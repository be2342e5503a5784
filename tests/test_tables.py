"""Reading TSV/CSV files: GLUE's files as they are, your own CSVs, clear errors."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import shared_path
from kerasbert.data import tables
from kerasbert.preprocessing import BertPreprocessor

C = tables.Columns
SAMPLE = Path(tables.__file__).parent / "sample"


@pytest.mark.parametrize(
    "folder, columns, header, rows, first_label",
    [
        ("glue_sst2", C("sentence", None, "label"), True, 872, "1"),
        ("glue_mrpc", C("#1 String", "#2 String", "Quality"), True, 408, "1"),
        ("glue_rte", C("sentence1", "sentence2", "label"), True, 277, "not_entailment"),
        ("glue_stsb", C("sentence1", "sentence2", "score"), True, 1500, "5.000"),
        ("glue_cola", C(3, None, 1), False, 1043, "1"),
    ],
)
def test_glue_dev_files_read_as_they_are(folder, columns, header, rows, first_label):
    ex = tables.read_examples(str(shared_path("data", folder, "dev.tsv")), columns, header=header)
    assert len(ex) == rows and ex.labels[0] == first_label
    assert (ex.text_pairs is not None) == (columns.text_pair is not None)
    # Quotes inside GLUE sentences are kept verbatim (QUOTE_NONE).
    assert all(t for t in ex.texts)


def test_csv_with_quotes_and_index_columns(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,text,label\n1,"Hello, ""world""",pos\n2,plain,neg\n', encoding="utf-8")
    ex = tables.read_examples(str(path), C("text", None, "label"))
    assert ex.texts == ['Hello, "world"', "plain"] and ex.labels == ["pos", "neg"]
    ex = tables.read_examples(str(path), C(1, None, 2), header=True)
    assert ex.texts[1] == "plain"


def test_labels_classes_and_regression():
    assert tables.class_names_from_labels(["1", "0", "10", "2"]) == ["0", "1", "2", "10"]
    assert tables.class_names_from_labels(["pos", "neg"]) == ["neg", "pos"]
    assert tables.class_names_from_labels(["pos", "neg"], ["pos", "neg"]) == ["pos", "neg"]
    np.testing.assert_array_equal(tables.encode_labels(["b", "a"], "classification", ["a", "b"]), [1, 0])
    np.testing.assert_allclose(tables.encode_labels(["0.5", "4"], "regression"), [0.5, 4.0])
    with pytest.raises(tables.TableError, match="--labels"):
        tables.encode_labels(["c"], "classification", ["a", "b"])
    with pytest.raises(tables.TableError, match="numbers"):
        tables.encode_labels(["good"], "regression")


def test_errors_name_the_flag(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("sentence\tlabel\nfine\t1\nshort\n", encoding="utf-8")
    with pytest.raises(tables.TableError, match="--text_column"):
        tables.read_examples(str(path), C("text", None, "label"))
    with pytest.raises(tables.TableError, match=r"t.tsv:3: row has 1 columns"):
        tables.read_examples(str(path), C("sentence", None, "label"))
    with pytest.raises(tables.TableError, match="no such file"):
        tables.read_examples(str(tmp_path / "missing.tsv"))
    with pytest.raises(tables.TableError, match="--no_header"):
        tables.read_examples(str(path), C("sentence", None, "label"), header=False)


def test_dataset_tokenizes_in_the_pipeline(tmp_path):
    pre = BertPreprocessor(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"], sequence_length=6)
    ex = tables.Examples(["a b", "b"], ["a", "a a"], ["x", "y"])
    ds = tables.make_dataset(ex, pre, np.array([0, 1], np.int32), batch_size=2)
    features, y = next(iter(ds))
    np.testing.assert_array_equal(features["token_ids"], [[2, 5, 6, 3, 5, 3], [2, 6, 3, 5, 5, 3]])
    np.testing.assert_array_equal(features["segment_ids"][1], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(y, [0, 1])


def test_unlabelled_pair_dataset_for_dev_scoring():
    """Dev scoring reads features only: a pair task's two columns must reach
    the preprocessor as one pair (was: `<lambda>() takes 1 positional argument
    but 2 were given`, the README's STS-B command)."""
    pre = BertPreprocessor(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"], sequence_length=6)
    ex = tables.Examples(["a b", "b"], ["a", "a a"], None)
    features = next(iter(tables.make_dataset(ex, pre, None, batch_size=2)))
    np.testing.assert_array_equal(features["token_ids"], [[2, 5, 6, 3, 5, 3], [2, 6, 3, 5, 5, 3]])
    single = tables.Examples(["a b"], None, None)
    features = next(iter(tables.make_dataset(single, pre, None, batch_size=2)))
    np.testing.assert_array_equal(features["token_ids"], [[2, 5, 6, 3, 0, 0]])


def test_an_empty_label_is_an_error_naming_file_line_and_flag(tmp_path):
    path = tmp_path / "t.tsv"
    # A blank line before the bad row: the line number is the file's.
    path.write_text("sentence\tlabel\nfine\tpos\n\nno label here\t \nok\tneg\n", encoding="utf-8")
    with pytest.raises(tables.TableError, match=r"t\.tsv:4: empty label .*--label_column"):
        tables.read_examples(str(path), C("sentence", None, "label"))
    path.write_text("sentence\tlabel\n\nfine\t1\nshort\n", encoding="utf-8")
    with pytest.raises(tables.TableError, match=r"t\.tsv:4: row has 1 columns"):
        tables.read_examples(str(path), C("sentence", None, "label"))


def test_a_latin1_file_names_the_encoding_file_line_and_column(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("sentence\tlabel\ngood\tpositive\nun café froid\tnegative\n".encode("latin-1"))
    with pytest.raises(tables.TableError) as error:
        tables.read_examples(path, tables.Columns("sentence", None, "label"))
    assert str(error.value) == (
        f"{path}:3: not UTF-8 (byte 0xe9 at column 7, 'é' in Latin-1); kerasbert reads UTF-8 text: convert the "
        f"file, e.g. iconv -f latin1 -t utf-8 {path} > utf8.tsv"
    )
    # The same file as UTF-8 (with a byte-order mark, as GLUE's MRPC) reads, accents intact.
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().decode("latin-1").encode("utf-8"))
    examples = tables.read_examples(path, tables.Columns("sentence", None, "label"))
    assert examples.texts == ["good", "un café froid"] and examples.labels == ["positive", "negative"]


def reference_dataset(examples, preprocessor, targets, batch_size, shuffle, seed, drop_remainder):
    """The pipeline `make_dataset` replaced: strings shuffled and batched by tf.data, then the
    preprocessor mapped over each batch."""
    columns = [tf.constant(examples.texts)]
    if examples.text_pairs is not None:
        columns.append(tf.constant(examples.text_pairs))
    ds = tf.data.Dataset.from_tensor_slices((tuple(columns), targets))
    if shuffle:
        ds = ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(lambda texts, y: (preprocessor(texts), y))


def test_packed_once_pipeline_gives_the_batches_of_mapping_the_strings():
    """Same ids, segments, masks, targets and batch order, epoch after epoch (reshuffled), as mapping
    the preprocessor over shuffled string batches: accents, control characters, CJK and pairs that
    need truncation included (pairs: the single-text path is the same code with one column)."""
    sample = tables.read_examples(str(SAMPLE / "train.tsv"), C("sentence", None, "label"))
    texts = sample.texts[:150] + ["Caf\u00e9 \u00dcBER na\u00efve", "zero\u200bwidth\x07bell", "\u4e2d\u6587 text", ""]
    second = [t[::-1] + " and more words to truncate" * 3 for t in texts]
    examples = tables.Examples(texts, second, None)
    pre = BertPreprocessor(str(SAMPLE / "vocab.txt"), sequence_length=24)
    targets = np.arange(len(texts), dtype=np.int32)
    args = dict(batch_size=16, shuffle=True, seed=7, drop_remainder=True)
    new = tables.make_dataset(examples, pre, targets, **args)
    old = reference_dataset(examples, pre, targets, **args)
    for _ in range(2):  # two epochs: reshuffled alike
        got, want = list(new), list(old)
        assert len(got) == len(want) == len(texts) // 16
        for (f, y), (g, z) in zip(got, want):
            np.testing.assert_array_equal(y, z)
            for key in ("token_ids", "segment_ids", "padding_mask"):
                np.testing.assert_array_equal(f[key], g[key])
    epoch = np.concatenate([y.numpy() for _, y in got])
    assert len(set(epoch)) == len(epoch) and not np.array_equal(epoch, np.sort(epoch))  # shuffled, no repeats
    # Unshuffled, with a short last batch: row i is example i (targets are the example indices).
    plain = list(tables.make_dataset(examples, pre, None, batch_size=64))
    assert [len(b["token_ids"]) for b in plain] == [64, 64, len(texts) - 128]
    ids = np.concatenate([b["token_ids"].numpy() for b in plain])
    shuffled = np.concatenate([f["token_ids"].numpy() for f, _ in got])
    np.testing.assert_array_equal(ids[epoch], shuffled)
    empty = tables.Examples([], [], None)
    assert list(tables.make_dataset(empty, pre, None, batch_size=4)) == []


def test_packing_in_chunks_on_threads_keeps_the_order():
    """`pack_examples` packs its chunks on a thread per core: 20 chunks of 8 give the ids of one chunk."""
    sample = tables.read_examples(str(SAMPLE / "train.tsv"), C("sentence", None, "label"))
    examples = tables.Examples(sample.texts[:157], None, None)
    pre = BertPreprocessor(str(SAMPLE / "vocab.txt"), sequence_length=24)
    whole = tables.pack_examples(examples, pre, chunk_size=1024)
    for _ in range(3):  # threads finish in any order; the rows must not
        chunked = tables.pack_examples(examples, pre, chunk_size=8)
        for key in whole:
            np.testing.assert_array_equal(chunked[key], whole[key])
    assert whole["token_ids"].shape == (157, 24)
