"""Extractive question answering (SQuAD v1.1): a span head over BERT's tokens.

Data: SQuAD v1.1 JSON as it is (`kerasbert.data.squad`), split by article
with `--train_articles` / `--dev_articles` (e.g. one file, ``0-29`` and
``30-37``). Questions and contexts are tokenized with
`BertPreprocessor.tokenize_with_raw_offsets`, in training exactly as in the
serving graph; answers map onto WordPieces through the raw offsets plus
Google's improve-answer-span; run_squad.py's windows (`max_seq_length` =
the preprocessor's sequence length, default 384 for this task,
`doc_stride` 128, `max_query_length` 64); a window without the whole
answer is labelled at ``[CLS]``.

The head: dropout, one dense layer to 2 logits per token (stddev 0.02),
output ``[batch, 2, sequence]`` (start, end), padding positions at -10000.
Loss: the mean of the start and end cross-entropies (run_squad.py).

Decoding (`decode_spans`, the same rule as the serving graph of
`kerasbert.export.question_answering`): every span of a window with
``start <= end < start + max_answer_length`` whose tokens are context
tokens and whose start token has its max context in that window (Google's
`_check_is_max_context`) is a candidate, scored ``start_logit +
end_logit``; the `n_best` highest of all the question's windows are kept
(ties: earlier window, start, end first), their scores softmaxed among
them. All pairs are searched, not only the top-20 starts × top-20 ends of
run_squad.py, so the best span is the exact maximum. The answer is the raw
context from the start token's first code point to the end token's last:
what Google's `get_final_text` tries to recover from detokenized pieces.

Dev metrics (each epoch): the official SQuAD v1.1 EM and F1 in percent
(`kerasbert.training.squad_metrics`) over every dev question (unalignable
ones included).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from kerasbert import contract
from kerasbert.data import squad
from kerasbert.tasks.base import Task, TaskDataError, feature_predict_fn, register

DEFAULT_SEQUENCE_LENGTH = 384
MASKED_LOGIT = -10000.0
BATCH_SHUFFLE_BUFFER = 64


@dataclasses.dataclass
class QAFeatures:
    """Packed windows of a list of questions (numpy).

    Attributes:
        token_ids, segment_ids: int32 ``[rows, sequence_length]``.
        lengths: int64 ``[rows]``: packed length.
        labels: int32 ``[rows, 2]``: start and end row positions (0 = [CLS]).
        example: int64 ``[rows]``: the question of each row.
        context_offset: int64 ``[rows]``: row position of the first context
            token (question length + 2).
        doc_start, doc_length: int64 ``[rows]``: the window's first context
            token and its number of context tokens.
        max_context: bool ``[rows, sequence_length]``: at row positions, True
            at context tokens whose max context this window is.
        trainable: bool ``[rows]``: the question's answer aligned.
    """

    token_ids: np.ndarray
    segment_ids: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    example: np.ndarray
    context_offset: np.ndarray
    doc_start: np.ndarray
    doc_length: np.ndarray
    max_context: np.ndarray
    trainable: np.ndarray

    def __len__(self):
        return len(self.lengths)

    def select(self, keep):
        return QAFeatures(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))


@dataclasses.dataclass
class Tokenized:
    """The WordPieces of the questions and (unique) contexts of a dataset."""

    questions: object  # TokenizedSentences
    contexts: object
    context_of: np.ndarray  # per example, its row in `contexts`


def tokenize_examples(preprocessor, examples) -> Tokenized:
    from kerasbert.tasks.token_classification import tokenize_sentences

    index, unique, context_of = {}, [], []
    for ex in examples:
        if ex.context not in index:
            index[ex.context] = len(unique)
            unique.append(ex.context)
        context_of.append(index[ex.context])
    return Tokenized(
        tokenize_sentences(preprocessor, [ex.question for ex in examples]),
        tokenize_sentences(preprocessor, unique),
        np.asarray(context_of, np.int64),
    )


def decode_spans(start_logits, end_logits, features, rows, max_answer_length, n_best):
    """The n-best spans of one question from its windows' logits (numpy).

    Args:
        start_logits, end_logits: float32 ``[rows, length]`` of this
            question's windows, in window order.
        features: the `QAFeatures` rows of those windows (same order).
        rows: their indices in `features`.

    Returns:
        A list of at most `n_best` `(score, doc_first_token, doc_last_token)`,
        best first, score = start + end logit (float32).
    """
    scores, firsts, lasts = [], [], []
    k = np.arange(max_answer_length)
    for r, row in enumerate(rows):
        c0, n, d0 = int(features.context_offset[row]), int(features.doc_length[row]), int(features.doc_start[row])
        if n == 0:
            continue
        s = np.asarray(start_logits[r][c0 : c0 + n], np.float32)
        e = np.asarray(end_logits[r][c0 : c0 + n], np.float32)
        mc = features.max_context[row][c0 : c0 + n]
        i = np.arange(n)
        end = i[:, None] + k[None, :]  # [n, A], row-major as the serving graph's order
        valid = (mc[:, None] & (end < n)).reshape(-1)
        total = (s[:, None] + e[np.minimum(end, n - 1)]).reshape(-1)
        scores.append(total[valid])
        firsts.append(np.repeat(d0 + i, max_answer_length)[valid])
        lasts.append((d0 + end).reshape(-1)[valid])
    if not scores:
        return []
    scores, firsts, lasts = np.concatenate(scores), np.concatenate(firsts), np.concatenate(lasts)
    order = np.argsort(-scores, kind="stable")[:n_best]
    return [(scores[j], int(firsts[j]), int(lasts[j])) for j in order]


def softmax(scores):
    scores = np.asarray(scores, np.float64)
    if not len(scores):
        return scores
    p = np.exp(scores - scores.max())
    return p / p.sum()


@register
@dataclasses.dataclass
class QuestionAnsweringTask(Task):
    """Extractive QA: a question and a paragraph in, the answer span out.

    Options:
        max_query_length: question tokens kept (run_squad.py's 64).
        doc_stride: step between window starts (128).
        max_answer_length: longest answer in tokens (30).
        n_best: answers returned per question (5).
        train_articles, dev_articles: article indices read from the
            training and the dev file ("" = all; "0-29", "30-37", "0,2,5-9").
        alignment: what `prepare` counted for the training answers.
    """

    name: ClassVar[str] = contract.QUESTION_ANSWERING
    description: ClassVar[str] = "extractive question answering: SQuAD v1.1 JSON, answer spans of the context"
    primary_metric: ClassVar[str] = "f1"
    default_sequence_length: ClassVar[int] = DEFAULT_SEQUENCE_LENGTH

    max_query_length: int = 64
    doc_stride: int = 128
    max_answer_length: int = 30
    n_best: int = 5
    train_articles: str = ""
    dev_articles: str = ""
    alignment: dict = dataclasses.field(default_factory=dict)

    # ---- flags and spec -------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            "--train_articles",
            default="",
            help="question answering: articles of --train_file to train on, 0-based (e.g. 0-29; default all)",
        )
        parser.add_argument(
            "--dev_articles",
            default="",
            help="question answering: articles of --dev_file to score (e.g. 30-37; default all)",
        )
        parser.add_argument(
            "--max_query_length", type=int, default=64, help="question answering: question tokens kept (default 64)"
        )
        parser.add_argument(
            "--doc_stride",
            type=int,
            default=128,
            help="question answering: tokens between window starts in long contexts (default 128)",
        )
        parser.add_argument(
            "--max_answer_length",
            type=int,
            default=30,
            help="question answering: longest answer in WordPieces (default 30)",
        )
        parser.add_argument("--n_best", type=int, default=5, help="question answering: answers returned (default 5)")

    @classmethod
    def from_args(cls, args) -> QuestionAnsweringTask:
        task = cls(
            max_query_length=int(getattr(args, "max_query_length", 64)),
            doc_stride=int(getattr(args, "doc_stride", 128)),
            max_answer_length=int(getattr(args, "max_answer_length", 30)),
            n_best=int(getattr(args, "n_best", 5)),
            train_articles=getattr(args, "train_articles", "") or "",
            dev_articles=getattr(args, "dev_articles", "") or "",
        )
        task.check_options()
        return task

    def check_options(self, sequence_length=None) -> None:
        for flag in ("max_query_length", "doc_stride", "max_answer_length", "n_best"):
            if getattr(self, flag) < 1:
                raise TaskDataError(f"--{flag} must be at least 1, got {getattr(self, flag)}")
        for flag in ("train_articles", "dev_articles"):
            try:
                squad.parse_articles(getattr(self, flag))
            except ValueError as e:
                raise TaskDataError(f"--{flag}: {e}") from None
        if sequence_length is not None and self.max_query_length + 4 > sequence_length:
            raise TaskDataError(
                f"--max_query_length {self.max_query_length} leaves no room for context in --sequence_length "
                f"{sequence_length} (needs max_query_length + 4 <= sequence_length)"
            )

    # ---- data -------------------------------------------------------------------
    def read_examples(self, path, split=None):
        spec = {"train": self.train_articles, "dev": self.dev_articles}.get(split, "")
        try:
            examples = squad.read_squad(path, squad.parse_articles(spec))
        except (squad.SquadDataError, ValueError) as e:
            flag = f"--{split}_articles" if split else "--train_articles/--dev_articles"
            raise TaskDataError(str(e) if isinstance(e, squad.SquadDataError) else f"{flag}: {e}") from e
        if not examples:
            raise TaskDataError(f"{path}: no questions" + (f" in articles {spec}" if spec else ""))
        return examples

    def read_split(self, path, split):
        return self.read_examples(path, split)

    def take(self, examples, n):
        return squad.SquadDataset(examples[:n], getattr(examples, "path", ""), getattr(examples, "articles", None))

    def prepare(self, train, dev=None) -> None:
        self.check_options()
        train_ids = {ex.id for ex in train}
        if dev is not None:
            shared = [ex.id for ex in dev if ex.id in train_ids]
            if shared:
                raise TaskDataError(
                    f"{len(shared)} dev questions are also training questions (e.g. id {shared[0]}): "
                    "split the file by article with --train_articles and --dev_articles"
                )

    def describe(self) -> str:
        text = f"doc_stride={self.doc_stride} max_query_length={self.max_query_length}"
        if self.alignment:
            text += f" (training {self.alignment.get('summary', '')})"  # (the run's start-up line goes on after it)
        return text

    # ---- features -------------------------------------------------------------------
    def features(self, examples, preprocessor, tokens=None, with_labels=True) -> tuple[QAFeatures, dict]:
        """All windows of `examples` (and, with labels, the alignment counts)."""
        import tensorflow as tf

        self.check_options(preprocessor.sequence_length)
        if tokens is None:
            tokens = tokenize_examples(preprocessor, examples)
        length = preprocessor.sequence_length
        report = squad.AlignmentReport()
        answer_ids = None
        if with_labels and examples:
            ids = preprocessor.tokenize_with_raw_offsets(tf.constant([ex.answers[0] for ex in examples]))[0]
            answer_ids = [row.numpy() for row in ids]
        rows = []
        for e, ex in enumerate(examples):
            q_ids = tokens.questions.row(e)[0][: self.max_query_length]
            c_ids, c_starts, c_ends, _ = tokens.contexts.row(int(tokens.context_of[e]))
            first = last = -1
            if with_labels:
                first, last, how = squad.align_answer(
                    c_starts, c_ends, c_ids, ex.answer_starts[0], ex.answers[0], answer_ids[e], ex.context
                )
                report.questions += 1
                if how == "unalignable":
                    report.unalignable.append(ex.id)
                else:
                    setattr(report, how, getattr(report, how) + 1)
            max_doc = length - len(q_ids) - 3
            spans = squad.window_spans(len(c_ids), max_doc, self.doc_stride)
            masks = squad.max_context_mask(spans, len(c_ids))
            for (d0, n), mc in zip(spans, masks):
                c0 = len(q_ids) + 2
                label = (0, 0)
                if first >= 0 and d0 <= first and last < d0 + n:
                    label = (c0 + first - d0, c0 + last - d0)
                rows.append((e, q_ids, c_ids[d0 : d0 + n], d0, n, mc, label, first >= 0))
        count = len(rows)
        token_ids = np.full((count, length), preprocessor.pad_id, np.int32)
        segment_ids = np.zeros((count, length), np.int32)
        max_context = np.zeros((count, length), bool)
        names = ("lengths", "example", "context_offset", "doc_start", "doc_length")
        meta = {k: np.zeros(count, np.int64) for k in names}
        labels = np.zeros((count, 2), np.int32)
        trainable = np.zeros(count, bool)
        for r, (e, q_ids, doc, d0, n, mc, label, ok) in enumerate(rows):
            q = len(q_ids)
            packed = [preprocessor.cls_id, *q_ids, preprocessor.sep_id, *doc, preprocessor.sep_id]
            token_ids[r, : len(packed)] = packed
            segment_ids[r, q + 2 : len(packed)] = 1
            max_context[r, q + 2 : q + 2 + n] = mc
            meta["lengths"][r], meta["example"][r], meta["context_offset"][r] = len(packed), e, q + 2
            meta["doc_start"][r], meta["doc_length"][r] = d0, n
            labels[r] = label
            trainable[r] = ok
        features = QAFeatures(
            token_ids, segment_ids, labels=labels, max_context=max_context, trainable=trainable, **meta
        )
        alignment = {}
        if with_labels:
            alignment = {
                "questions": report.questions,
                "exact": report.exact,
                "improved": report.improved,
                "inexact": report.inexact,
                "unalignable": len(report.unalignable),
                "unalignable_ids": report.unalignable[:20],
                "summary": report.describe(),
            }
        return features, alignment

    # ---- model --------------------------------------------------------------------
    def build_model(self, encoder, dropout: float = 0.1):
        import keras

        inputs = {
            "token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
            "segment_ids": keras.Input((None,), dtype="int32", name="segment_ids"),
            "padding_mask": keras.Input((None,), dtype="bool", name="padding_mask"),
        }
        sequence = encoder(inputs)["sequence_output"]
        try:  # the span head never reads the pooler
            encoder.get_layer("pooled_dense").trainable = False
        except ValueError:
            pass
        x = keras.layers.Dropout(dropout, name="span_dropout")(sequence)
        logits = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), name="span_logits"
        )(x)
        logits = keras.layers.Permute((2, 1), name="start_end")(logits)  # [batch, 2, sequence]
        mask = keras.ops.expand_dims(inputs["padding_mask"], 1)
        logits = keras.ops.where(mask, logits, MASKED_LOGIT)
        return keras.Model(inputs, logits, name="bert_question_answering")

    def build_loss(self):
        """Sparse cross-entropy of the start and of the end position, averaged."""
        import keras

        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="span_loss")

    def build_metrics(self) -> list:
        import keras

        return [keras.metrics.SparseCategoricalAccuracy(name="position_accuracy")]

    def _dataset(self, features, batch_size, pad_id, training, seed):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices(
            (features.token_ids, features.segment_ids, features.labels, features.lengths)
        )
        n = len(features)
        if training:
            ds = ds.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
            ds = ds.batch(batch_size, drop_remainder=n >= batch_size)
        else:
            ds = ds.batch(batch_size)

        def cut(ids, segments, labels, lengths):
            longest = tf.cast(tf.reduce_max(lengths), tf.int32)
            ids = ids[:, :longest]
            return {
                "token_ids": ids,
                "segment_ids": segments[:, :longest],
                "padding_mask": tf.not_equal(ids, pad_id),
            }, labels

        return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def build_inputs(self, examples, preprocessor, batch_size: int, training: bool = False, seed: int = 0):
        """`(dataset of (features, [start, end] labels), rows)`: one row per
        window; training drops the windows of unalignable questions."""
        features, alignment = self.features(examples, preprocessor)
        if training:
            self.alignment = alignment
            features = features.select(features.trainable)
        return self._dataset(features, batch_size, preprocessor.pad_id, training, seed), len(features)

    # ---- evaluation ---------------------------------------------------------------------
    def _predict_fn(self, model):
        import tensorflow as tf

        return feature_predict_fn(self, model, lambda logits: tf.cast(logits, tf.float32))

    def predict(self, model, preprocessor, examples, batch_size: int = 32) -> list[dict]:
        """Answers of `examples` with Python post-processing (`decode_spans`).

        Returns, per example: ``{"answer", "start", "end", "score",
        "answers", "answer_starts", "answer_ends", "answer_scores"}``, offsets
        in code points of the raw context (-1 and "" without a candidate).
        """
        tokens = tokenize_examples(preprocessor, examples)
        features, _ = self.features(examples, preprocessor, tokens=tokens, with_labels=False)
        predict = self._predict_fn(model)
        logits = np.zeros((len(features), 2, preprocessor.sequence_length), np.float32)
        row = 0
        for inputs, _ in self._dataset(features, batch_size, preprocessor.pad_id, False, 0):
            out = predict(inputs).numpy()
            logits[row : row + len(out), :, : out.shape[2]] = out
            row += len(out)
        by_example = [[] for _ in examples]
        for r, e in enumerate(features.example):
            by_example[e].append(r)
        results = []
        for e, ex in enumerate(examples):
            rows = by_example[e]
            best = decode_spans(logits[rows, 0], logits[rows, 1], features, rows, self.max_answer_length, self.n_best)
            _, starts, ends, _ = tokens.contexts.row(int(tokens.context_of[e]))
            probabilities = softmax([b[0] for b in best])
            spans = [(int(starts[first]), int(ends[last])) for _, first, last in best]
            texts = [ex.context[a:b] for a, b in spans]
            top = spans[0] if spans else (-1, -1)
            results.append(
                {
                    "answer": texts[0] if texts else "",
                    "start": top[0],
                    "end": top[1],
                    "score": float(probabilities[0]) if len(best) else 0.0,
                    "answers": texts,
                    "answer_starts": [a for a, _ in spans],
                    "answer_ends": [b for _, b in spans],
                    "answer_scores": [float(p) for p in probabilities],
                }
            )
        return results

    def evaluate(self, model, preprocessor, examples, batch_size: int = 32) -> dict[str, float]:
        """The official SQuAD v1.1 ``{"f1", "exact_match"}`` in percent."""
        from kerasbert.training import squad_metrics

        predictions = self.predict(model, preprocessor, examples, batch_size)
        scores = squad_metrics.squad_scores(
            {ex.id: list(ex.answers) for ex in examples},
            {ex.id: p["answer"] for ex, p in zip(examples, predictions)},
        )
        return {"f1": scores["f1"], "exact_match": scores["exact_match"]}

    # ---- export -------------------------------------------------------------------------
    def serving_endpoints(self, preprocessor, model) -> dict[str, tuple]:
        from kerasbert.export.question_answering import qa_serving_fns

        self.check_options(preprocessor.sequence_length)
        return qa_serving_fns(
            preprocessor,
            model,
            max_query_length=self.max_query_length,
            doc_stride=self.doc_stride,
            max_answer_length=self.max_answer_length,
            n_best=self.n_best,
        )

    def metadata(self) -> dict:
        return {
            "max_query_length": self.max_query_length,
            "doc_stride": self.doc_stride,
            "max_answer_length": self.max_answer_length,
            "n_best": self.n_best,
            "offsets": "code points into the raw context",
            "train_articles": self.train_articles,
            "alignment": {k: v for k, v in self.alignment.items() if k != "unalignable_ids"},
        }
