"""Token classification (named-entity recognition) on BERT's sequence output.

Data: CoNLL column files (IOB1/IOB2/BIOES) and Chinese character files
(BMES), read by `kerasbert.data.tagging` with every scheme converted to IOB2
over the entity types (tags ``O, B-T1, I-T1, B-T2, ...``, types sorted).

Raw text is what gets tokenized, in training exactly as in serving: a
sentence's words joined by single spaces (CoNLL) or with nothing (character
files), tokenized by `BertPreprocessor.tokenize_with_raw_offsets`, which
gives each WordPiece its code-point span in that text.

* Training labels (`tagging.align_labels`): a token that starts a BERT word
  gets the tag of the dataset word holding its first character (the word's
  own tag if the token starts the word, else ``I-`` of its type, or O);
  ``##`` continuations, ``[CLS]``, ``[SEP]`` and padding get -1, ignored by
  the loss and the token accuracy ("first sub-token labelled", as Google's
  and Model Garden's tagging). `label_all_subtokens` labels continuations
  with ``I-``/O too.
* Windows: a sentence of more than ``sequence_length - 2`` tokens is split
  into consecutive non-overlapping windows of ``sequence_length - 2``
  tokens, each packed ``[CLS] window [SEP]``; predictions are merged back per
  sentence. Nothing is truncated.
* Word-level prediction (`tagging.word_tags_from_tokens`): ``##`` pieces take
  the ``I-`` form of their BERT word's first piece's tag; each word takes the
  tag of the token holding its first character, or ``I-`` of it when the
  word starts inside that token (a Latin run "MBA" in a character file is
  one token, three words).
* Batches: each batch is cut to its longest row. Training batches are
  random (`--length_bucketing` sorts rows by length within chunks of 50
  batches first: less padding, but 1 F1 point worse on CoNLL-2003);
  evaluation rows are sorted by length.
* Evaluation: entity-level micro precision/recall/F1 and F1 per type
  (`kerasbert.training.entity_metrics`, conlleval semantics), on words.

The head: dropout on the sequence output, one dense layer to the tags
(stddev 0.02), logits ``[batch, sequence, tags]``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from kerasbert import contract
from kerasbert.data import tagging
from kerasbert.tasks.base import Task, TaskDataError, feature_predict_fn, register

# With --length_bucketing, training rows are sorted by length within chunks of this many
# batches. Off by default: on CoNLL-2003 (MiniLM, 1 epoch, seed 42) random batches, each cut to its
# longest row, gave dev F1 0.868 against 0.858 with bucketing (benchmarks/bench_ner.py).
SORT_CHUNK_BATCHES = 50
# How many batches the batch-order shuffle holds.
BATCH_SHUFFLE_BUFFER = 64
# Sentences tokenized per call of the preprocessor.
TOKENIZE_CHUNK = 4096


@dataclasses.dataclass
class TokenizedSentences:
    """WordPieces of sentences, flat with row splits (numpy).

    `ids` int32, `starts`/`ends` int64 code-point offsets into each
    sentence's raw text, `continuation` bool; sentence `i`'s tokens are
    ``[splits[i], splits[i + 1])``.
    """

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    continuation: np.ndarray
    splits: np.ndarray

    def __len__(self):
        return len(self.splits) - 1

    def row(self, i):
        lo, hi = self.splits[i], self.splits[i + 1]
        return self.ids[lo:hi], self.starts[lo:hi], self.ends[lo:hi], self.continuation[lo:hi]


def tokenize_sentences(preprocessor, texts) -> TokenizedSentences:
    """Tokenizes raw `texts` once, with the preprocessor's graph ops."""
    import tensorflow as tf

    parts = {"ids": [], "starts": [], "ends": [], "continuation": [], "lengths": []}
    for lo in range(0, len(texts), TOKENIZE_CHUNK):
        chunk = tf.constant(list(texts[lo : lo + TOKENIZE_CHUNK]), dtype=tf.string)
        ids, starts, ends = preprocessor.tokenize_with_raw_offsets(chunk)
        parts["ids"].append(ids.flat_values.numpy().astype(np.int32))
        parts["starts"].append(starts.flat_values.numpy().astype(np.int64))
        parts["ends"].append(ends.flat_values.numpy().astype(np.int64))
        parts["continuation"].append(preprocessor.is_continuation(ids.flat_values).numpy().astype(bool))
        parts["lengths"].append(ids.row_lengths().numpy())
    if not parts["ids"]:
        empty = np.zeros((0,), np.int64)
        return TokenizedSentences(empty.astype(np.int32), empty, empty, empty.astype(bool), np.zeros((1,), np.int64))
    lengths = np.concatenate(parts.pop("lengths"))
    splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenizedSentences(**{k: np.concatenate(v) for k, v in parts.items()}, splits=splits)


@dataclasses.dataclass
class Windows:
    """Packed rows (``[CLS] window [SEP]``) of a list of sentences.

    Attributes:
        ids: int32 ``[rows, sequence_length]``, `pad_id`-padded.
        labels: int32 ``[rows, sequence_length]``, -1 at ``[CLS]``,
            ``[SEP]``, padding and ignored tokens.
        lengths: int64 ``[rows]``: packed length (tokens + 2).
        sentence: int64 ``[rows]``: the sentence of each row.
        token_start: int64 ``[rows]``: index of the row's first token in its
            sentence's tokens.
    """

    ids: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    sentence: np.ndarray
    token_start: np.ndarray

    def __len__(self):
        return len(self.lengths)

    def select(self, keep):
        return Windows(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))


def _batches(windows, batch_size, pad_id, training, seed, sort_chunk_batches=1):
    """`tf.data.Dataset` of `(features, labels)`, each batch cut to its
    longest row."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((windows.ids, windows.labels, windows.lengths))
    if training:
        n = len(windows)
        ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)

        def sort_chunk(ids, labels, lengths):
            order = tf.argsort(lengths, stable=True)
            return tf.gather(ids, order), tf.gather(labels, order), tf.gather(lengths, order)

        if sort_chunk_batches > 1:
            ds = ds.batch(batch_size * sort_chunk_batches).map(sort_chunk).unbatch()
        ds = ds.batch(batch_size, drop_remainder=n >= batch_size)
    else:
        ds = ds.batch(batch_size)

    def cut(ids, labels, lengths):
        longest = tf.cast(tf.reduce_max(lengths), tf.int32)
        ids, labels = ids[:, :longest], labels[:, :longest]
        features = {
            "token_ids": ids,
            "segment_ids": tf.zeros_like(ids),
            "padding_mask": tf.not_equal(ids, pad_id),
        }
        return features, labels

    ds = ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.shuffle(BATCH_SHUFFLE_BUFFER, seed=seed + 1, reshuffle_each_iteration=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def masked_token_accuracy_class():
    """`MaskedTokenAccuracy`, defined on first use (keeps keras out of imports
    that only read data)."""
    global _MaskedTokenAccuracy
    if _MaskedTokenAccuracy is None:
        import keras

        @keras.saving.register_keras_serializable(package="kerasbert")
        class MaskedTokenAccuracy(keras.metrics.Metric):
            """Accuracy of the argmax tag over tokens whose label is >= 0."""

            def __init__(self, name="token_accuracy", **kwargs):
                super().__init__(name=name, **kwargs)
                self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
                self.count = self.add_variable(shape=(), initializer="zeros", name="count")

            def update_state(self, y_true, y_pred, sample_weight=None):
                from keras import ops

                y_true = ops.cast(y_true, "int32")
                mask = ops.cast(ops.greater_equal(y_true, 0), "float32")
                hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
                self.correct.assign_add(ops.sum(hit * mask))
                self.count.assign_add(ops.sum(mask))

            def result(self):
                from keras import ops

                return ops.divide_no_nan(self.correct, self.count)

            def reset_state(self):
                self.correct.assign(0.0)
                self.count.assign(0.0)

        _MaskedTokenAccuracy = MaskedTokenAccuracy
    return _MaskedTokenAccuracy


_MaskedTokenAccuracy = None


@register
@dataclasses.dataclass
class TokenClassificationTask(Task):
    """Named-entity recognition: one IOB2 tag per word, entities out.

    Options:
        format: "auto", "conll" or "bmes" (see `kerasbert.data.tagging`).
        scheme: the files' tag scheme: "auto", "iob1", "iob2" or "bioes".
        entity_types: learned from the training file by `prepare`.
        label_all_subtokens: label ``##`` pieces too (``I-``/O) instead of
            ignoring them.
        train_format, train_scheme: the training file's format and
            (detected) scheme, recorded by `prepare`.
    """

    name: ClassVar[str] = contract.TOKEN_CLASSIFICATION
    description: ClassVar[str] = "named-entity recognition: a tag per word (CoNLL / BIO / BIOES / BMES files)"
    primary_metric: ClassVar[str] = "f1"

    format: str = "auto"
    scheme: str = "auto"
    entity_types: list = dataclasses.field(default_factory=list)
    label_all_subtokens: bool = False
    length_bucketing: bool = False
    train_format: str = ""
    train_scheme: str = ""

    # ---- flags and spec -------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            "--format",
            choices=tagging.FORMATS,
            default="auto",
            help="token classification: file format (conll: word ... tag columns; bmes: "
            "character files, one 'char tag' per line or 'chars<TAB>tags' per sentence; default auto)",
        )
        parser.add_argument(
            "--tag_scheme",
            choices=tagging.SCHEMES,
            default="auto",
            help="token classification: the files' tag scheme (iob1 as CoNLL-2003, iob2/BIO, "
            "bioes incl. BMES; all are read as IOB2; default auto-detected)",
        )
        parser.add_argument(
            "--label_all_subtokens",
            action="store_true",
            help="token classification: train on every WordPiece, not only each word's first",
        )
        parser.add_argument(
            "--length_bucketing",
            action="store_true",
            help="token classification: batch training sentences of similar length (less padding; "
            "measured 1 F1 point worse on CoNLL-2003); default: random batches cut to their longest row",
        )

    @classmethod
    def from_args(cls, args) -> TokenClassificationTask:
        fmt = getattr(args, "format", "auto") or "auto"
        if fmt not in tagging.FORMATS:  # --format is shared with the table tasks (tsv, csv)
            raise TaskDataError(f"--format {fmt}: token classification reads {', '.join(tagging.FORMATS)}")
        return cls(
            format=fmt,
            scheme=getattr(args, "tag_scheme", "auto") or "auto",
            label_all_subtokens=bool(getattr(args, "label_all_subtokens", False)),
            length_bucketing=bool(getattr(args, "length_bucketing", False)),
        )

    @property
    def tags(self) -> list[str]:
        """The model's tags in logit order: ``["O", "B-T1", "I-T1", ...]``."""
        return tagging.tag_names(self.entity_types)

    # ---- data -------------------------------------------------------------------
    def read_examples(self, path):
        try:
            corpus = tagging.read_tagged(path, fmt=self.format, scheme=self.scheme)
        except tagging.TaggedDataError as e:
            raise TaskDataError(str(e)) from e
        if not corpus:
            raise TaskDataError(f"{path}: no tagged sentences")
        return corpus

    def prepare(self, train, dev=None) -> None:
        found = sorted({t[2:] for s in train for t in s.tags if t != "O"})
        where = getattr(train, "path", "") or "the training data"
        if not self.entity_types:
            if not found:
                raise TaskDataError(f"{where}: no entities (every tag is O); nothing to learn")
            self.entity_types = found
        else:
            unknown = sorted(set(found) - set(self.entity_types))
            if unknown:
                raise TaskDataError(
                    f"{where}: entity types {', '.join(unknown)} are not among the task's "
                    f"({', '.join(self.entity_types)})"
                )
        if dev is not None:
            extra = sorted({t[2:] for s in dev for t in s.tags if t != "O"} - set(self.entity_types))
            if extra:
                dev_where = getattr(dev, "path", "") or "the dev data"
                raise TaskDataError(
                    f"{dev_where}: entity types {', '.join(extra)} do not occur in the training file "
                    f"(which has {', '.join(self.entity_types)})"
                )
        self.train_format = getattr(train, "format", "") or self.train_format
        self.train_scheme = getattr(train, "scheme", "") or self.train_scheme

    def describe(self) -> str:
        source = "/".join(x for x in (self.train_format, self.train_scheme) if x)
        return f"{len(self.entity_types)} entity types ({', '.join(self.entity_types)}), {len(self.tags)} IOB2 tags" + (
            f", from {source}" if source else ""
        )

    def windows(self, sentences, preprocessor, tokens=None, with_labels=True) -> Windows:
        """Every sentence aligned (`tagging.align_labels`) and cut into
        ``[CLS] window [SEP]`` rows of at most the preprocessor's
        sequence length."""
        if tokens is None:
            tokens = tokenize_sentences(preprocessor, [s.text for s in sentences])
        length = preprocessor.sequence_length
        max_tokens = length - 2
        index = {t: i for i, t in enumerate(self.tags)}
        rows_ids, rows_labels, lengths, sentence_of, token_start = [], [], [], [], []
        for i, sentence in enumerate(sentences):
            ids, starts, ends, cont = tokens.row(i)
            if with_labels:
                try:
                    tag_ids = np.array([index[t] for t in sentence.tags], np.int64)
                except KeyError as e:
                    raise TaskDataError(
                        f"sentence at line {sentence.line}: tag {e.args[0]!r} is not one of the task's tags"
                    ) from None
                labels = tagging.align_labels(starts, ends, cont, sentence.spans, tag_ids, self.label_all_subtokens)
            else:
                labels = np.full(len(ids), tagging.IGNORE_LABEL, np.int32)
            for lo, hi in tagging.window_ranges(len(ids), max_tokens):
                rows_ids.append(ids[lo:hi])
                rows_labels.append(labels[lo:hi])
                lengths.append(hi - lo + 2)
                sentence_of.append(i)
                token_start.append(lo)
        n = len(lengths)
        ids_mat = np.full((n, length), preprocessor.pad_id, np.int32)
        labels_mat = np.full((n, length), tagging.IGNORE_LABEL, np.int32)
        for r, (ids, labels) in enumerate(zip(rows_ids, rows_labels)):
            ids_mat[r, 0] = preprocessor.cls_id
            ids_mat[r, 1 : 1 + len(ids)] = ids
            ids_mat[r, 1 + len(ids)] = preprocessor.sep_id
            labels_mat[r, 1 : 1 + len(labels)] = labels
        return Windows(
            ids_mat,
            labels_mat,
            np.array(lengths, np.int64),
            np.array(sentence_of, np.int64),
            np.array(token_start, np.int64),
        )

    # ---- model --------------------------------------------------------------------
    def build_model(self, encoder, dropout: float = 0.1):
        import keras

        if not self.entity_types:
            raise ValueError("the task has no entity types yet: call prepare(train, dev) first")
        inputs = {
            "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
            "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
            "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
        }
        sequence = encoder(inputs)["sequence_output"]
        # The tagger never reads BERT's pooler: freeze it so the optimizer does not
        # warn about its missing gradients (its weights are still saved and loaded).
        try:
            encoder.get_layer("pooled_dense").trainable = False
        except ValueError:
            pass
        x = keras.layers.Dropout(dropout, name="tagger_dropout")(sequence)
        logits = keras.layers.Dense(
            len(self.tags),
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="tag_logits",
        )(x)
        return keras.Model(inputs, logits, name="bert_token_classification")

    def build_loss(self):
        """Sparse cross-entropy from logits, mean over the labelled tokens
        (label -1 ignored)."""
        import keras

        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=tagging.IGNORE_LABEL, name="tagging_loss"
        )

    def build_metrics(self) -> list:
        return [masked_token_accuracy_class()()]

    def build_inputs(self, examples, preprocessor, batch_size: int, training: bool = False, seed: int = 0):
        """`(dataset of (features, labels), rows)`: one row per window.

        Training drops rows without a labelled token, shuffles, and keeps
        whole batches only when there are at least `batch_size` rows.
        Evaluation keeps every row, sorted by length.
        """
        windows = self.windows(examples, preprocessor)
        if training:
            windows = windows.select((windows.labels >= 0).any(axis=1))
        else:
            windows = windows.select(np.argsort(windows.lengths, kind="stable"))
        chunk = SORT_CHUNK_BATCHES if self.length_bucketing else 1
        return _batches(windows, batch_size, preprocessor.pad_id, training, seed, chunk), len(windows)

    # ---- evaluation ---------------------------------------------------------------------
    def _predict_fn(self, model):
        """A `tf.function` from features to argmax tag ids, one trace per model."""
        import tensorflow as tf

        return feature_predict_fn(self, model, lambda logits: tf.argmax(logits, axis=-1, output_type=tf.int32))

    def predict_token_tags(self, model, preprocessor, sentences, batch_size: int = 32, tokens=None):
        """Tag ids of every sentence's WordPieces (windows merged back).

        Returns:
            `(tokens, per_sentence_tag_ids)`: the `TokenizedSentences` and a
            list of int arrays, one per sentence, aligned with its tokens.
        """
        if tokens is None:
            tokens = tokenize_sentences(preprocessor, [s.text for s in sentences])
        windows = self.windows(sentences, preprocessor, tokens=tokens, with_labels=False)
        order = np.argsort(windows.lengths, kind="stable")
        windows = windows.select(order)
        ds = _batches(windows, batch_size, preprocessor.pad_id, training=False, seed=0)
        predict = self._predict_fn(model)
        per_row, row = [], 0
        for features, _ in ds:
            tags = predict(features).numpy()
            for r in range(tags.shape[0]):
                n = int(windows.lengths[row]) - 2
                per_row.append(tags[r, 1 : 1 + n])
                row += 1
        # Back to window order (windows of a sentence are consecutive and in order).
        unsorted = [None] * len(per_row)
        for position, original in enumerate(order):
            unsorted[original] = per_row[position]
        sentence_of = np.empty(len(order), np.int64)
        sentence_of[order] = windows.sentence
        return tokens, tagging.merge_windows(unsorted, sentence_of, len(sentences))

    def predict_word_tags(self, model, preprocessor, sentences, batch_size: int = 32) -> list[list[str]]:
        """IOB2 tags of every word of `sentences` (word-level prediction)."""
        tokens, token_tags = self.predict_token_tags(model, preprocessor, sentences, batch_size)
        names = self.tags
        out = []
        for i, sentence in enumerate(sentences):
            _, starts, ends, cont = tokens.row(i)
            ids = tagging.word_tags_from_tokens(
                starts,
                ends,
                token_tags[i],
                sentence.spans,
                is_continuation=None if self.label_all_subtokens else cont,
            )
            out.append([names[t] for t in ids])
        return out

    def evaluate(self, model, preprocessor, examples, batch_size: int = 32) -> dict[str, float]:
        """Word-level entity scores: ``{"f1", "precision", "recall",
        "f1_<TYPE>", ...}`` (micro; conlleval semantics)."""
        from kerasbert.training import entity_metrics

        predicted = self.predict_word_tags(model, preprocessor, examples, batch_size)
        return entity_metrics.flat_scores([list(s.tags) for s in examples], predicted)

    # ---- export -------------------------------------------------------------------------
    def serving_endpoints(self, preprocessor, model) -> dict[str, tuple]:
        from kerasbert.export.tagging import tagging_serving_fns

        return tagging_serving_fns(preprocessor, model, self.tags)

    def metadata(self) -> dict:
        return {
            "entity_types": list(self.entity_types),
            "tags": self.tags,
            "tag_scheme": "iob2",
            "scheme": self.train_scheme or self.scheme,
            "format": self.train_format or self.format,
            "label_all_subtokens": self.label_all_subtokens,
        }
