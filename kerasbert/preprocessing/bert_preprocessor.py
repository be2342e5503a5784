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
    SST-2 train (`benchmarks/bench_foundation.py`, loaded 2-core machine):
    FastBertTokenizer alone 280k-484k lines/s against 119k-184k for
    keras-hub's tokenizer + packer; with the explicit normalisation below
    (needed for parity) and packing ours runs at 125k-202k lines/s, 21-34x
    transformers' BertTokenizerFast.

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
            raise ValueError(
                f"truncation must be one of {sorted(TRUNCATION_STRATEGIES)}, "
                f"got {truncation!r}"
            )
        if int(sequence_length) < 3:
            raise ValueError(
                f"sequence_length must be at least 3, got {sequence_length}"
            )
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
            "BertPreprocessor runs on strings in tf.data or tf.function, not on "
            "symbolic Keras inputs"
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
