"""Reading labelled TSV/CSV files (GLUE and your own) into `tf.data`.

Columns are chosen by header name or by 0-based index, so the GLUE files work
as they are: SST-2 (`sentence`, `label`), MRPC (`#1 String`, `#2 String`,
`Quality`), RTE (`sentence1`, `sentence2`, `label`), STS-B (`sentence1`,
`sentence2`, `score`) and CoLA (no header: text in column 3, label in 1).
"""

import concurrent.futures
import csv
import dataclasses
import io
import os
import sys
import weakref

import numpy as np
import tensorflow as tf

from kerasbert.data.encoding import NotUTF8Error, read_utf8

# GLUE's TSVs contain unbalanced quote characters inside sentences; read them
# verbatim (QUOTE_NONE), and let fields be as long as the data needs.
csv.field_size_limit(sys.maxsize)


class TableError(ValueError):
    """A file or column problem; the message names the flag that fixes it."""


@dataclasses.dataclass
class Columns:
    """Which columns hold what. Each is a header name or a 0-based index."""

    text: object = "sentence"
    text_pair: object = None
    label: object = "label"


@dataclasses.dataclass
class Examples:
    """Texts and raw label strings read from one file."""

    texts: list
    text_pairs: list  # None when the task has a single text
    labels: list  # raw strings; None when the file has no labels
    path: str = ""

    def __len__(self):
        return len(self.texts)


def _delimiter(path, fmt):
    if fmt in (None, "auto"):
        fmt = "csv" if path.lower().endswith(".csv") else "tsv"
    if fmt not in ("tsv", "csv"):
        raise TableError(f"--format must be tsv, csv or auto, got {fmt!r}")
    return fmt


def _column_index(spec, header, path, flag):
    """Resolves a column spec (name or index) against the header."""
    if spec is None:
        return None
    if isinstance(spec, int) or (isinstance(spec, str) and spec.lstrip("-").isdigit()):
        return int(spec)
    if header is None:
        raise TableError(
            f"{flag}={spec!r} names a column, but {path} is read without a "
            "header (--no_header); give a 0-based index instead"
        )
    if spec not in header:
        raise TableError(f"{flag}={spec!r}: no such column in {path}; columns are {header} (or give a 0-based index)")
    return header.index(spec)


def read_examples(path, columns=None, fmt="auto", header=True, require_labels=True):
    """Reads a TSV/CSV file into `Examples`.

    Args:
        path: the file (str or path-like).
        columns: a `Columns` naming the text, optional text-pair and label
            columns (header names or 0-based indices).
        fmt: "tsv", "csv" or "auto" (by file extension).
        header: whether the first row is a header.
        require_labels: fail when the label column is missing.

    Raises:
        TableError: with a message that names the flag to change.

    Example:

    >>> ex = read_examples("train.tsv", Columns("sentence", None, "label"))  # doctest: +SKIP
    >>> len(ex), ex.texts[0], ex.labels[0]  # doctest: +SKIP
    (1500, 'the soup was wonderful .', 'positive')
    """
    columns = columns or Columns()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TableError(f"no such file: {path}")
    fmt = _delimiter(path, fmt)
    try:
        text = read_utf8(path)  # (GLUE's MRPC files start with a byte-order mark; it is dropped)
    except NotUTF8Error as e:
        raise TableError(str(e)) from None
    f = io.StringIO(text, newline="")
    if fmt == "tsv":
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(f)
    try:
        # (line number, row): the line a row ends on, for error messages.
        rows = [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise TableError(f"{path}:{reader.line_num}: cannot parse as {fmt}: {e} (try --format)") from e
    head = None
    if header:
        if not rows:
            raise TableError(f"{path} is empty")
        head = [h.strip() for h in rows.pop(0)[1]]
    if not rows:
        raise TableError(f"{path} has no data rows")
    i_text = _column_index(columns.text, head, path, "--text_column")
    i_pair = _column_index(columns.text_pair, head, path, "--text_pair_column")
    i_label = None
    if columns.label is not None:
        try:
            i_label = _column_index(columns.label, head, path, "--label_column")
        except TableError:
            if require_labels:
                raise
    needed = max(i for i in (i_text, i_pair, i_label) if i is not None)
    texts, pairs, labels = [], [], []
    for line_no, row in rows:
        if len(row) <= needed:
            raise TableError(
                f"{path}:{line_no}: row has {len(row)} columns, need at least "
                f"{needed + 1} (check --text_column/--label_column and --format)"
            )
        texts.append(row[i_text])
        if i_pair is not None:
            pairs.append(row[i_pair])
        if i_label is not None:
            label = row[i_label].strip()
            if not label:
                raise TableError(
                    f"{path}:{line_no}: empty label in column {columns.label!r} "
                    "(check --label_column, or fill in the label)"
                )
            labels.append(label)
    return Examples(
        texts=texts,
        text_pairs=pairs if i_pair is not None else None,
        labels=labels if i_label is not None else None,
        path=path,
    )


def class_names_from_labels(labels, given=None):
    """The class list: `given` (order kept), else sorted distinct labels
    (numerically when all are integers, so GLUE's "0","1" keep their order)."""
    if given:
        names = [n.strip() for n in given]
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise TableError(f"labels {unknown[:5]} are not in --labels {names}")
        return names
    distinct = set(labels)
    if all(label.lstrip("-").isdigit() for label in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def encode_labels(labels, task, class_names=None):
    """Label strings to int32 class ids or float32 scores."""
    if task == "regression":
        try:
            return np.asarray([float(label) for label in labels], dtype=np.float32)
        except ValueError as e:
            raise TableError(
                f"regression labels must be numbers ({e}); check --label_column or use --task classification"
            ) from e
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise TableError(
            f"labels {unknown[:5]} do not occur in the training file's classes "
            f"{class_names}; pass --labels to list every class"
        )
    return np.asarray([index[label] for label in labels], dtype=np.int32)


# One traced packing function per (preprocessor, number of text columns); weak keys, so a dropped
# preprocessor takes its function with it.
_PACKERS = weakref.WeakKeyDictionary()
PACK_CHUNK = 1024


def _packer(preprocessor, columns):
    functions = _PACKERS.setdefault(preprocessor, {})
    if columns not in functions:
        ref = weakref.ref(preprocessor)
        functions[columns] = tf.function(
            lambda *texts: ref()(texts), input_signature=[tf.TensorSpec([None], tf.string)] * columns
        )
    return functions[columns]


def pack_examples(examples, preprocessor, chunk_size=PACK_CHUNK):
    """Every example through `preprocessor`, once: `{name: tensor [N, ...]}` (its output dict).

    The preprocessor runs in one `tf.function` over chunks of `chunk_size` rows, the chunks on a
    thread per core. A tokenizer kernel runs on one thread, so one chunk at a time kept one core busy:
    0.59x of the single-stream `tf.function` rate for the first epoch, below the same layer mapped in
    parallel inside `tf.data` (0.77x), on this project's 2 quiet cores (`benchmarks/bench_foundation.py`,
    part a). The chunks are concatenated in order, so the ids do not depend on the threads.
    """
    columns = [examples.texts] + ([examples.text_pairs] if examples.text_pairs is not None else [])
    pack = _packer(preprocessor, len(columns))
    n = len(examples.texts)

    def chunk(i):
        return pack(*(tf.constant(c[i : i + chunk_size], tf.string) for c in columns))

    starts = list(range(0, n, chunk_size)) or [0]  # no examples: one empty chunk gives the shapes
    chunks = [chunk(starts[0])]  # traces the function once, before the threads call it
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        chunks += pool.map(chunk, starts[1:])
    return {k: tf.concat([c[k] for c in chunks], axis=0) for k in chunks[0]}


def make_dataset(
    examples,
    preprocessor,
    targets=None,
    batch_size=32,
    shuffle=False,
    seed=0,
    drop_remainder=False,
    pad_to_sequence_length=False,
):
    """`tf.data` pipeline: raw strings → in-graph preprocessing → batches.

    Tokenization uses the same layer the export uses. The examples are packed once, up front
    (`pack_examples`: the layer in a `tf.function`, 1024 rows at a time, a thread per core); `tf.data` then shuffles
    and batches row indices and gathers each batch from the packed tensors. The batches are those
    of shuffling the strings and mapping the layer over each batch (the same shuffle seed gives the
    same permutation), at tf.function speed, and the texts are not tokenized again every epoch.
    Memory: the packed ids, `9 * sequence_length` bytes per example. Each batch is then cut to
    its longest row (`cut_padding`) unless `pad_to_sequence_length`.

    Returns:
        A dataset of `features` or `(features, targets)` where `features` is
        the dict `BertPreprocessor` returns.
    """
    n = len(examples.texts)
    packed = pack_examples(examples, preprocessor)
    targets = None if targets is None else tf.constant(targets)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def gather(index):
        features = {k: tf.gather(v, index) for k, v in packed.items()}
        return features if targets is None else (features, tf.gather(targets, index))

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if not pad_to_sequence_length:
        ds = cut_padding(ds)
    return ds.prefetch(tf.data.AUTOTUNE)


# Batches are cut to a multiple of this many tokens: at most sequence_length / 8 shapes (XLA compiles one
# program per shape; without XLA Keras traces its step once, for a dynamic length).
CUT_LENGTH_MULTIPLE = 8


def cut_padding(ds, multiple=CUT_LENGTH_MULTIPLE):
    """Cuts each batch of a `make_dataset` pipeline (`features` or `(features, targets)` elements) to its
    longest row, rounded up to `multiple`: SST-2 sentences are 10-25 WordPieces, and every padded position
    costs as much encoder compute as a real one. Padding is masked, so the model's outputs are the same."""
    from kerasbert.preprocessing.batching import cut_to_longest

    def cut(features, *targets):
        features = cut_to_longest(features, multiple)
        return (features, *targets) if targets else features

    return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE)
