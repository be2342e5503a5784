"""Question answering serving: question + context in, the answer text out, in the graph.

`qa_serving_fns` builds the `serving_default` signature of a question
answering export (names from `kerasbert.contract`) out of TF core and
tf-text ops only, so stock TF Serving and a process importing only
`tensorflow` and `tensorflow_text` run it.

What happens to a batch of `(question, context)` pairs:

1. `BertPreprocessor.tokenize_with_raw_offsets` on both: WordPiece ids, and
   for the context each token's code point span in the raw text. The
   question keeps its first `max_query_length` tokens.
2. Windows, as run_squad.py and `kerasbert.data.squad.window_spans`: a
   window holds ``sequence_length - len(question) - 3`` context tokens, the
   starts step by ``min(doc_stride, that)``, the last window reaches the
   context's end (never truncated; an empty context has one empty window).
   Each window is ``[CLS] question [SEP] window [SEP]``, segment ids 1 from
   the window on; the windows of the whole batch are padded to the longest.
3. Max context (Google's `_check_is_max_context`): a context token seen by
   several windows belongs to the one where ``100 * min(left, right) +
   window_length`` is largest, the first on ties.
4. The model gives start and end logits ``[windows, 2, length]``. A
   candidate is a start token whose max context is this window and an end
   token of the same window's context with ``0 <= end - start <
   max_answer_length``, scored start + end logit. The `n_best` best
   candidates over all of a question's windows (ties: earlier window, start,
   end) are its answers; `score` is each one's softmax probability among
   them.
5. An answer is the raw context from its start token's first code point to
   its end token's last: `tf.strings.substr(..., unit="UTF8_CHAR")`, so
   ``context[start:end] == answer`` in Python.

The Python twin is `kerasbert.tasks.question_answering.decode_spans`
(dev scoring); tests check both give the same answers.
"""

import tensorflow as tf

from kerasbert import contract
from kerasbert.export.saved_model import text_tokens_endpoint


def pack_qa_windows(preprocessor, question_ids, context_ids, doc_stride):
    """Windows of every (question, context) pair, packed for BERT.

    Args:
        preprocessor: a `BertPreprocessor` (sequence length, special ids).
        question_ids: ragged int `[batch, (q)]`, already cut to
            `max_query_length`; it must leave room: ``q + 4 <= sequence_length``.
        context_ids: ragged int `[batch, (tokens)]`.
        doc_stride: step between window starts.

    Returns:
        A dict: `features` (model inputs `[windows, length]`, length at least
        3), `num_windows` int64 `[batch]`, `doc_start`, `context_offset`
        int64 `[windows]` (first context token's index in the context and
        its row position), `is_context` and `max_context` bool
        `[windows, length]` at row positions.
    """
    length = preprocessor.sequence_length
    q_len = question_ids.row_lengths()
    d_len = context_ids.row_lengths()
    batch = tf.shape(q_len, out_type=tf.int64)[0]
    max_doc = tf.constant(length - 3, tf.int64) - q_len
    step = tf.minimum(max_doc, doc_stride)
    num_windows = 1 + (tf.maximum(d_len - max_doc, 0) + step - 1) // step
    example = tf.repeat(tf.range(batch, dtype=tf.int64), num_windows)
    first_window = tf.cumsum(num_windows, exclusive=True)
    total_windows = tf.reduce_sum(num_windows)
    in_example = tf.range(total_windows, dtype=tf.int64) - tf.gather(first_window, example)
    doc_start = in_example * tf.gather(step, example)
    window_len = tf.maximum(tf.minimum(tf.gather(max_doc, example), tf.gather(d_len, example) - doc_start), 0)
    base = tf.gather(context_ids.row_splits[:-1], example) + doc_start
    flat_index = tf.ragged.range(base, base + window_len)  # [windows, (window_len)] into the flat context tokens
    doc = tf.gather(tf.cast(context_ids.flat_values, tf.int32), flat_index)
    query = tf.gather(tf.cast(question_ids, tf.int32), example)

    # Max context: score each window token, keep the first best window per context token.
    position = flat_index.flat_values - tf.gather(base, flat_index.value_rowids())
    lengths = tf.gather(window_len, flat_index.value_rowids())
    score = 100 * tf.minimum(position, lengths - 1 - position) + lengths
    token = flat_index.flat_values
    num_tokens = tf.shape(context_ids.flat_values, out_type=tf.int64)[0]
    best = tf.math.unsorted_segment_max(score, token, num_tokens)
    window_of = flat_index.value_rowids()
    candidate = tf.where(tf.equal(score, tf.gather(best, token)), window_of, tf.int64.max)
    first_best = tf.math.unsorted_segment_min(candidate, token, num_tokens)
    is_max = flat_index.with_flat_values(tf.equal(window_of, tf.gather(first_best, token)))

    ones = tf.ones([total_windows, 1], tf.int32)
    cls, sep = ones * preprocessor.cls_id, ones * preprocessor.sep_id
    packed = tf.concat([cls, query, sep, doc, sep], 1)
    segments = tf.concat([0 * ones, tf.zeros_like(query), 0 * ones, tf.ones_like(doc), ones], 1)
    no = tf.zeros([total_windows, 1], tf.bool)
    q_no = tf.zeros_like(query, dtype=tf.bool)
    is_context = tf.concat([no, q_no, no, tf.ones_like(doc, dtype=tf.bool), no], 1)
    max_context = tf.concat([no, q_no, no, is_max, no], 1)

    def dense(ragged, default):
        out = ragged.to_tensor(default)
        extra = tf.maximum(3 - tf.shape(out)[1], 0)  # no window at all: still a valid [0, 3] input
        return tf.pad(out, [[0, 0], [0, extra]], constant_values=default)

    token_ids = dense(packed, preprocessor.pad_id)
    features = {
        "token_ids": token_ids,
        "segment_ids": dense(segments, 0),
        "padding_mask": dense(tf.ones_like(packed, dtype=tf.bool), False),
    }
    return {
        "features": features,
        "num_windows": num_windows,
        "doc_start": doc_start,
        "context_offset": tf.gather(q_len, example) + 2,
        "is_context": dense(is_context, False),
        "max_context": dense(max_context, False),
    }


def best_spans(start_logits, end_logits, windows, max_answer_length, n_best):
    """The `n_best` spans per question from its windows' logits.

    Returns:
        `(scores, first, last, valid)`, each `[batch, n_best]`: the span
        score (start + end logit, float32), its first and last context
        token (int64 indices into the question's context tokens) and
        whether there is such a candidate (False pads).
    """
    width = tf.shape(start_logits)[1]
    answer = tf.range(max_answer_length)
    ends = tf.range(width)[:, tf.newaxis] + answer[tf.newaxis, :]  # [length, A]
    end_logits = tf.pad(end_logits, [[0, 0], [0, max_answer_length]], constant_values=float("-inf"))
    is_end = tf.pad(windows["is_context"], [[0, 0], [0, max_answer_length]], constant_values=False)
    valid = windows["max_context"][:, :, tf.newaxis] & tf.gather(is_end, ends, axis=1)
    total = start_logits[:, :, tf.newaxis] + tf.gather(end_logits, ends, axis=1)
    total = tf.where(valid, total, float("-inf"))
    per_window = tf.cast(width * max_answer_length, tf.int64)
    flat = tf.reshape(total, [-1, per_window])
    per_example = tf.RaggedTensor.from_row_lengths(flat, windows["num_windows"]).merge_dims(1, 2)
    dense = per_example.to_tensor(float("-inf"))
    dense = tf.pad(dense, [[0, 0], [0, tf.maximum(n_best - tf.shape(dense)[1], 0)]], constant_values=float("-inf"))
    scores, index = tf.math.top_k(dense, k=n_best, sorted=True)
    index = tf.cast(index, tf.int64)
    valid = scores > float("-inf")
    first_window = tf.cumsum(windows["num_windows"], exclusive=True)
    window = first_window[:, tf.newaxis] + index // per_window
    window = tf.where(valid, window, 0)
    rest = index % per_window
    position = rest // max_answer_length
    offset = rest % max_answer_length
    first = tf.gather(windows["doc_start"], window) + position - tf.gather(windows["context_offset"], window)
    return scores, first, first + offset, valid


def qa_serving_fns(preprocessor, model, max_query_length=64, doc_stride=128, max_answer_length=30, n_best=5):
    """The `serving_default` and `tokens` signatures of a question answering model.

    Args:
        preprocessor: a `kerasbert.preprocessing.BertPreprocessor`.
        model: a Keras model over BERT's input dict returning logits
            ``[batch, 2, seq]`` (start, end).
        max_query_length, doc_stride, max_answer_length, n_best: as
            `kerasbert.tasks.question_answering.QuestionAnsweringTask`.

    Returns:
        `{contract.SERVING_DEFAULT: (fn, input_signature)}` taking
        `question` and `context` (tf.string `[batch]`) and returning
        `answer` (string `[batch]`, a substring of the raw context), `start`,
        `end` (int64 code points, ``context[start:end] == answer``),
        `score` (float32, its softmax probability among the n-best),
        `answers`, `answer_starts`, `answer_ends`, `answer_scores`
        (`[batch, n_best]`, best first; "", -1, -1, 0 where a context has
        fewer candidates). A context without tokens answers "" at -1.
        `tokens` (`text` -> WordPieces with offsets) is `saved_model.text_tokens_endpoint`.

    Raises:
        ValueError: `max_query_length + 4 > sequence_length` (no room for
            context) or an option below 1.
    """
    for name, value in (("max_query_length", max_query_length), ("doc_stride", doc_stride)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if max_answer_length < 1 or n_best < 1:
        raise ValueError("max_answer_length and n_best must be at least 1")
    if max_query_length + 4 > preprocessor.sequence_length:
        raise ValueError(
            f"max_query_length {max_query_length} leaves no context tokens in sequence_length "
            f"{preprocessor.sequence_length}"
        )
    spec = [
        tf.TensorSpec([None], tf.string, name=contract.QUESTION),
        tf.TensorSpec([None], tf.string, name=contract.CONTEXT),
    ]

    def serve(question, context):
        question_ids = preprocessor.tokenize_with_raw_offsets(question)[0][:, :max_query_length]
        context_ids, starts, ends = preprocessor.tokenize_with_raw_offsets(context)
        windows = pack_qa_windows(preprocessor, question_ids, context_ids, doc_stride)
        logits = tf.cast(model(windows["features"], training=False), tf.float32)
        scores, first, last, valid = best_spans(logits[:, 0], logits[:, 1], windows, max_answer_length, n_best)
        base = context_ids.row_splits[:-1][:, tf.newaxis]
        # One spare entry at the end for padding candidates (there may be no tokens at all).
        spare = tf.shape(starts.flat_values, out_type=tf.int64)[0]
        pad = tf.constant([-1], tf.int64)
        char_start = tf.gather(tf.concat([starts.flat_values, pad], 0), tf.where(valid, base + first, spare))
        char_end = tf.gather(tf.concat([ends.flat_values, pad], 0), tf.where(valid, base + last, spare))
        rows = tf.broadcast_to(context[:, tf.newaxis], tf.shape(char_start))
        texts = tf.strings.substr(
            rows, tf.maximum(char_start, 0), tf.maximum(char_end - char_start, 0), unit="UTF8_CHAR"
        )
        texts = tf.where(valid, texts, "")
        top = scores[:, :1]
        weights = tf.where(valid, tf.exp(scores - tf.where(valid[:, :1], top, 0.0)), 0.0)
        probabilities = tf.math.divide_no_nan(weights, tf.reduce_sum(weights, axis=1, keepdims=True))
        return {
            contract.ANSWER: texts[:, 0],
            contract.START: char_start[:, 0],
            contract.END: char_end[:, 0],
            contract.SCORE: probabilities[:, 0],
            contract.ANSWERS: texts,
            contract.ANSWER_STARTS: char_start,
            contract.ANSWER_ENDS: char_end,
            contract.ANSWER_SCORES: probabilities,
        }

    return {contract.SERVING_DEFAULT: (serve, spec), contract.TOKENS_SIGNATURE: text_tokens_endpoint(preprocessor)}
