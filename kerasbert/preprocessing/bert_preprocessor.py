"""In-graph BERT preprocessing: raw strings -> WordPiece ids -> packed model inputs.

One layer does all of it with TF core and tf-text ops only, so the same object
feeds `tf.data` during training and sits inside every exported SavedModel
(stock TF Serving can run it: no `py_function`).
"""

import os

import keras
import tensorflow as tf
import tensorflow_text as tf_text

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Characters Google's BasicTokenizer._clean_text drops: control (Cc, except
# \t \n \r which are whitespace), format (Cf: soft hyphen, zero-width space...)
# and U+FFFD. RE2 syntax.
_CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\p{Cf}\x{FFFD}]"

# Truncation strategies for text pairs. "longest_first" is Google BERT's
# `_truncate_seq_pair` (drop a token from the longer text, from the second on
# ties); tf-text's round-robin trimmer keeps the same tokens for two texts, so
# "round_robin" is an alias. "waterfall" cuts the last text first.
TRUNCATION_STRATEGIES = ("longest_first", "round_robin", "waterfall")


def load_vocabulary(vocabulary):
    """Returns a vocabulary as a list of tokens.

    Args:
        vocabulary: a path to a BERT `vocab.txt` (one token per line), or a
            list/tuple of tokens.

    Raises:
        ValueError: if the file is missing or lacks BERT's special tokens.
    """
    if isinstance(vocabulary, (str, os.PathLike)):
        path = os.fspath(vocabulary)
        if not os.path.isfile(path):
            raise ValueError(f"vocabulary file not found: {path}")
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n").rstrip("\r") for line in f]
        while tokens and tokens[-1] == "":
            tokens.pop()
    else:
        tokens = list(vocabulary)
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise ValueError(
            f"vocabulary lacks BERT special tokens {missing}; a BERT vocab.txt "
            "has [PAD], [UNK], [CLS], [SEP] and [MASK]"
        )
    return tokens


@keras.saving.register_keras_serializable(package="kerasbert")
class BertPreprocessor(keras.layers.Layer):
    """Raw text (or text pairs) to BERT inputs, entirely in the TF graph.

    Normalisation follows Google's `BasicTokenizer` with tf-text ops (drop
    control characters; uncased: NFD, lower-case, strip combining marks;
    cased: NFC), then `tf_text.FastBertTokenizer` splits on whitespace,
    punctuation and CJK characters (one token each) and runs WordPiece.

    Why not FastBertTokenizer's own `lower_case_nfd_strip_accents`: its
    normaliser also applies compatibility folding (full-width `，`→`,`,
    `２`→`2`), which BERT does not; on ChnSentiCorp dev only 14.8% of lines
    then matched the reference tokenizer, against 100% with the explicit
    normalisation here (SST-2 train/dev too). It costs ~1.5x in tokenizer
    time (360k vs 540k SST-2 lines/s on 2 cores), still far from a
    bottleneck.
    Packing follows BERT: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, segment
    ids 0/1, right padding, and truncation to `sequence_length`.

    Why FastBertTokenizer rather than keras-hub's `BertTokenizer`: keras-hub
    splits words with a regex op and then runs `FastWordpieceTokenizer` on
    the pieces; the fused op splits and looks up in one pass. Measured on
    SST-2 train (`benchmarks/bench_foundation.py --rounds 3`, quiet 2-core
    AMD EPYC, one stream): FastBertTokenizer alone 372k lines/s against
    168k for keras-hub's tokenizer + packer; with the explicit normalisation
    below (needed for parity) and packing, ours runs at 178k lines/s
    [168k-219k], 1.06x keras-hub's and 18.9x transformers' BertTokenizerFast
    padded to 128.

    Why packing is written here rather than with keras-hub's
    `MultiSegmentPacker`: that layer truncates with tf-text's
    `RoundRobinTrim` op even for one segment, and the TF-Text build inside
    the stock `tensorflow/serving` images (2.12) predates that op, so such an
    export would not load there. Google's longest-first rule has a closed
    form (below) in TF core ops.

    Args:
        vocabulary: path to a `vocab.txt` or a list of tokens.
        lowercase: lower-case and strip accents (uncased models). Use False
            for cased vocabularies.
        sequence_length: length of the packed output.
        truncation: "longest_first" (= "round_robin", BERT's rule) or
            "waterfall" (truncate the last segment first).

    Call arguments:
        inputs: a string tensor `[batch]` (or a scalar), a tuple/list of one
            or two such tensors, or a dict with keys `text` and optionally
            `text_pair`.

    Returns:
        A dict with `token_ids`, `segment_ids` (int32) and `padding_mask`
        (bool), each `[batch, sequence_length]`: the input names of
        `keras_hub.models.BertBackbone`.

    Example:

    >>> pre = BertPreprocessor(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    ...                         "the", "quick", "fox", "##es"],
    ...                        sequence_length=8)
    >>> pre(tf.constant(["The quick foxes"]))["token_ids"].numpy()
    array([[2, 5, 6, 7, 8, 3, 0, 0]], dtype=int32)
    """

    def __init__(
        self,
        vocabulary,
        lowercase=True,
        sequence_length=128,
        truncation="longest_first",
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        if truncation not in TRUNCATION_STRATEGIES:
            raise ValueError(f"truncation must be one of {sorted(TRUNCATION_STRATEGIES)}, got {truncation!r}")
        if int(sequence_length) < 3:
            raise ValueError(f"sequence_length must be at least 3, got {sequence_length}")
        self.vocabulary = load_vocabulary(vocabulary)
        self.lowercase = bool(lowercase)
        self.sequence_length = int(sequence_length)
        self.truncation = truncation
        index = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_id = index["[PAD]"]
        self.unk_id = index["[UNK]"]
        self.cls_id = index["[CLS]"]
        self.sep_id = index["[SEP]"]
        self.mask_id = index["[MASK]"]
        self._tokenizer = tf_text.FastBertTokenizer(
            self.vocabulary,
            suffix_indicator="##",
            unknown_token="[UNK]",
            token_out_type=tf.int32,
            lower_case_nfd_strip_accents=False,
        )
        self.built = True  # no weights; usable (and exportable) before any call

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    @property
    def special_token_ids(self):
        """Ids of [PAD], [UNK], [CLS], [SEP], [MASK] (never masked or predicted)."""
        return [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id]

    def normalize(self, text):
        """BERT's text normalisation (see the class docstring), in the graph."""
        text = tf.convert_to_tensor(text, dtype=tf.string)
        text = tf.strings.regex_replace(text, _CONTROL_CHARS, "")
        if not self.lowercase:
            return tf_text.normalize_utf8(text, "NFC")
        text = tf_text.normalize_utf8(text, "NFD")
        text = tf.strings.lower(text, encoding="utf-8")
        return tf.strings.regex_replace(text, r"\p{Mn}", "")

    def tokenize(self, text):
        """WordPiece ids of raw strings: a `tf.RaggedTensor` `[batch, (tokens)]`."""
        return self._tokenizer.tokenize(self.normalize(text))

    def tokenize_with_offsets(self, text):
        """Ids plus start/end byte offsets of each token.

        Offsets index the *normalised* string (`self.normalize(text)`), which
        differs from the raw one only where normalisation changed byte
        lengths (accents, control characters).
        """
        return self._tokenizer.tokenize_with_offsets(self.normalize(text))

    def _normalized_units(self, text):
        """Raw text cut into units, each normalised on its own.

        A unit is one code point plus the combining marks (`\\p{M}`) and the
        characters normalisation drops (control, format) that follow it, so
        what `normalize` does to the whole text (drop control characters, then
        NFC-compose a letter with its marks) stays inside a unit. Returns
        `(normalized, starts, ends, rows)`: flat tensors over all units of the
        batch: normalised strings; the code point offsets in the raw string
        of the unit's first and one past its last character that is not
        dropped (int64); the unit's row (int64).
        """
        chars = tf.strings.unicode_split(text, "UTF-8")
        flat = chars.flat_values
        rows = chars.value_rowids()
        index = tf.range(tf.size(flat, out_type=tf.int64), dtype=tf.int64)
        position = index - tf.gather(chars.row_splits, rows)  # code point index in its row
        dropped = tf.strings.regex_full_match(flat, _CONTROL_CHARS)
        attached = tf.logical_or(dropped, tf.strings.regex_full_match(flat, r"\p{M}"))
        opens = tf.logical_or(tf.equal(position, 0), tf.logical_not(attached))
        unit = tf.cumsum(tf.cast(opens, tf.int64)) - 1
        num_units = tf.reduce_sum(tf.cast(opens, tf.int64))
        normalized = self.normalize(tf.strings.unsorted_segment_join(flat, unit, num_units))
        first = tf.boolean_mask(position, opens)
        kept_min = tf.math.unsorted_segment_min(tf.where(dropped, tf.int64.max, position), unit, num_units)
        kept_max = tf.math.unsorted_segment_max(
            tf.where(dropped, tf.constant(-1, tf.int64), position + 1), unit, num_units
        )
        # A unit of dropped characters only normalises to "" and is never a token.
        empty = kept_max < 0
        starts = tf.where(empty, first, kept_min)
        ends = tf.where(empty, first, kept_max)
        return normalized, starts, ends, tf.boolean_mask(rows, opens)

    def tokenize_with_raw_offsets(self, text):
        """Ids plus start/end offsets of each token in the *raw* string.

        Offsets count Unicode code points of the input as given, so in Python
        `text[start:end]` is the raw source of the token (accents, case,
        full-width forms and all); control characters and combining marks
        that normalisation drops are never a token of their own, but a
        token's span covers the marks that follow its last character. A raw
        character that normalises into several tokens (uncased: a Hangul
        syllable decomposes into jamo) gives each of them its span.

        How: the raw text is cut into units (a code point plus its following
        combining marks and dropped characters), each unit is normalised on
        its own, and the normalised units are joined and tokenised; each
        token's byte offsets in that string are mapped back through the
        cumulative byte lengths of the units (start: the unit holding byte `start`; end: one past
        the unit holding byte `end - 1`).

        The ids equal `tokenize(text)`'s wherever normalising unit by unit
        gives the same string as normalising the whole text. Context-
        dependent lower-casing (Greek final sigma, `Σ` -> `ς` at a word's
        end) keeps byte lengths, so when the whole-text normalisation has
        the same length as the unit-wise one it is the string tokenised. What
        remains different: NFC composing across units that are not combining
        marks (conjoining Hangul jamo, cased only); no line of SST-2 (train
        and dev), CoNLL-2003 eng.testa or Chinese Resume dev differs.

        Args:
            text: a string tensor `[batch]` (or a scalar).

        Returns:
            `(ids, starts, ends)`: ragged `[batch, (tokens)]`, int32 ids and
            int64 code point offsets (for a scalar input, 1-D tensors).
        """
        text = tf.convert_to_tensor(text, dtype=tf.string)
        if text.shape.rank == 0:
            ids, starts, ends = self.tokenize_with_raw_offsets(text[tf.newaxis])
            return ids[0], starts[0], ends[0]
        normalized, unit_starts, unit_ends, unit_rows = self._normalized_units(text)
        batch = tf.shape(text, out_type=tf.int64)[0]
        joined = tf.strings.unsorted_segment_join(normalized, unit_rows, batch)
        whole = self.normalize(text)
        same_length = tf.equal(tf.strings.length(whole), tf.strings.length(joined))
        ids, byte_starts, byte_ends = self._tokenizer.tokenize_with_offsets(tf.where(same_length, whole, joined))
        # Cumulative byte ends of the units over the whole batch (monotone), and
        # each row's first byte in that count.
        unit_bytes = tf.cast(tf.strings.length(normalized), tf.int64)
        cumulative = tf.cumsum(unit_bytes)
        row_bytes = tf.math.unsorted_segment_sum(unit_bytes, unit_rows, batch)
        row_base = tf.cumsum(row_bytes, exclusive=True)
        token_base = tf.gather(row_base, byte_starts.value_rowids())
        first = byte_starts.flat_values + token_base
        last = byte_ends.flat_values - 1 + token_base
        first_unit = tf.searchsorted(cumulative, first, side="right", out_type=tf.int64)
        last_unit = tf.searchsorted(cumulative, last, side="right", out_type=tf.int64)
        starts = ids.with_flat_values(tf.gather(unit_starts, first_unit))
        ends = ids.with_flat_values(tf.gather(unit_ends, last_unit))
        return ids, starts, ends

    def is_continuation(self, ids):
        """True where an id is a `##` continuation WordPiece (any shape, dense or ragged)."""
        table = tf.constant([t.startswith("##") for t in self.vocabulary], dtype=tf.bool)
        if isinstance(ids, tf.RaggedTensor):
            return tf.ragged.map_flat_values(tf.gather, table, ids)
        return tf.gather(table, ids)

    def word_start_mask(self, ids):
        """True where a token starts a BERT word (not a `##` continuation)."""
        if isinstance(ids, tf.RaggedTensor):
            return tf.ragged.map_flat_values(tf.logical_not, self.is_continuation(ids))
        return tf.logical_not(self.is_continuation(ids))

    def id_to_token(self, ids):
        """Maps ids (any shape, dense or ragged) to token strings."""
        table = tf.constant(self.vocabulary, dtype=tf.string)
        if isinstance(ids, tf.RaggedTensor):
            return tf.ragged.map_flat_values(tf.gather, table, ids)
        return tf.gather(table, ids)

    def _truncation_lengths(self, lengths, budget):
        """Tokens to keep per segment (int64 `[batch]` each)."""
        if len(lengths) == 1:
            return [tf.minimum(lengths[0], budget)]
        la, lb = lengths
        if self.truncation == "waterfall":
            ka = tf.minimum(la, budget)
            return [ka, tf.minimum(lb, budget - ka)]
        # Closed form of `_truncate_seq_pair`: the shorter text keeps what it
        # has up to half the budget; the first text gets the odd token.
        return [
            tf.minimum(la, tf.maximum(budget - lb, (budget + 1) // 2)),
            tf.minimum(lb, tf.maximum(budget - la, budget // 2)),
        ]

    def pack(self, segments, sequence_length=None):
        """Packs one or two ragged id batches into BERT inputs.

        `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, truncated to fit
        `sequence_length`, right-padded with `[PAD]`; segment id 1 for B and
        its `[SEP]`.
        """
        segments = list(segments) if isinstance(segments, (list, tuple)) else [segments]
        if not 1 <= len(segments) <= 2:
            raise ValueError(f"expected one or two segments, got {len(segments)}")
        length = sequence_length or self.sequence_length
        segments = [tf.cast(s, tf.int32) for s in segments]
        budget = tf.constant(length - 1 - len(segments), tf.int64)
        keep = self._truncation_lengths([s.row_lengths() for s in segments], budget)
        trimmed = [
            tf.ragged.boolean_mask(s, tf.ragged.range(s.row_lengths()) < k[:, tf.newaxis])
            for s, k in zip(segments, keep)
        ]
        batch = trimmed[0].nrows()
        cls = tf.fill([batch, 1], self.cls_id)
        sep = tf.fill([batch, 1], self.sep_id)
        pieces, segment_ids = [cls], [tf.zeros_like(cls)]
        for i, seg in enumerate(trimmed):
            pieces += [seg, sep]
            segment_ids += [tf.ones_like(seg) * i, tf.ones_like(sep) * i]
        shape = [None, length]
        token_ids = tf.concat(pieces, axis=1).to_tensor(self.pad_id, shape=shape)
        segment_ids = tf.concat(segment_ids, axis=1).to_tensor(0, shape=shape)
        return {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": tf.not_equal(token_ids, self.pad_id),
        }

    def call(self, inputs):
        if isinstance(inputs, dict):
            texts = [inputs["text"]]
            if inputs.get("text_pair") is not None:
                texts.append(inputs["text_pair"])
        elif isinstance(inputs, (list, tuple)):
            texts = list(inputs)
        else:
            texts = [inputs]
        if not 1 <= len(texts) <= 2:
            raise ValueError(f"expected one or two texts, got {len(texts)}")
        texts = [tf.convert_to_tensor(t, dtype=tf.string) for t in texts]
        unbatched = texts[0].shape.rank == 0
        if unbatched:
            texts = [t[tf.newaxis] for t in texts]
        outputs = self.pack([self.tokenize(t) for t in texts])
        if unbatched:
            outputs = {k: tf.squeeze(v, 0) for k, v in outputs.items()}
        return outputs

    def compute_output_spec(self, inputs):
        raise NotImplementedError(
            "BertPreprocessor runs on strings in tf.data or tf.function, not on symbolic Keras inputs"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary=self.vocabulary,
            lowercase=self.lowercase,
            sequence_length=self.sequence_length,
            truncation=self.truncation,
        )
        return config
