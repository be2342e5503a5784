"""Token classification (NER) serving: raw text in, entities out, in the graph.

The functions here build the two signatures of a token-classification
export (names from `kerasbert.contract`) out of TF core and tf-text ops only,
so stock TF Serving and a process importing only `tensorflow` and
`tensorflow_text` run them.

What happens to a batch of texts:

1. `BertPreprocessor.tokenize_with_raw_offsets`: WordPiece ids, each with the
   code point span it came from in the raw text.
2. Windows: each text's tokens are cut into consecutive, non-overlapping
   windows of `sequence_length - 2` tokens (a long text is never
   truncated: it just has more windows; a text without tokens has none).
   Each window is packed as `[CLS] window [SEP]`, segment ids 0, and the
   windows of the whole batch are padded to the longest of them.
3. The model gives logits `[windows, length, tags]`; softmax; each token of
   a text takes the probabilities at its position in its window.
4. Words: a BERT word is a token that is not a `##` continuation plus the
   `##` tokens after it. A word's tag is the argmax at its first token and
   its probability that tag's probability there.
5. IOB2 decoding (conlleval): `B-X` starts an entity; `I-X` continues one
   when the previous word of the same text is `B-X` or `I-X` (same type),
   otherwise it starts a new one; `O` is outside.
6. An entity spans from the start of its first word's first token to the end
   of its last word's last token (code points into the raw text); its score
   is the mean over its words of the probability of each word's tag.

Example:

    endpoints = tagging_serving_fns(preprocessor, model, ["O", "B-PER", "I-PER"])
    save_serving_archive(path, [preprocessor, model], endpoints)
    # in a client: out = loaded.signatures["serving_default"](text=...)
    # text[out["entity_starts"][i, j]:out["entity_ends"][i, j]] is entity j of text i
"""

import dataclasses

import tensorflow as tf

from kerasbert import contract


@dataclasses.dataclass(frozen=True)
class TagScheme:
    """An IOB2 tag list read once: per tag, whether it is `B-`/`I-` and its type.

    Attributes:
        tags: the tags, in the model's output order.
        types: entity type names, in order of first appearance.
        type_ids: per tag, the index of its type in `types` (-1 for `O`).
        begins: per tag, True for `B-` tags.
        insides: per tag, True for `I-` tags.
    """

    tags: tuple
    types: tuple
    type_ids: tuple
    begins: tuple
    insides: tuple

    @classmethod
    def from_tags(cls, tags):
        """Raises ValueError unless every tag is `O`, `B-<type>` or `I-<type>`."""
        tags = tuple(tags)
        if not tags:
            raise ValueError("the tag list is empty")
        if len(set(tags)) != len(tags):
            raise ValueError(f"the tag list has duplicates: {list(tags)}")
        types, type_ids, begins, insides = [], [], [], []
        for tag in tags:
            if tag == "O":
                type_ids.append(-1)
                begins.append(False)
                insides.append(False)
                continue
            prefix, _, name = tag.partition("-")
            if prefix not in ("B", "I") or not name:
                raise ValueError(f"tag {tag!r} is not IOB2: tags are 'O', 'B-<type>' or 'I-<type>'")
            if name not in types:
                types.append(name)
            type_ids.append(types.index(name))
            begins.append(prefix == "B")
            insides.append(prefix == "I")
        return cls(tags, tuple(types), tuple(type_ids), tuple(begins), tuple(insides))


def pack_windows(preprocessor, ids):
    """Cuts each row of ragged token ids into windows and packs them for BERT.

    Args:
        preprocessor: a `BertPreprocessor` (its `sequence_length` and special
            token ids).
        ids: ragged int `[batch, (tokens)]`.

    Returns:
        `(features, window, position)`: `features` are the model inputs
        (`token_ids`, `segment_ids` int32, `padding_mask` bool, each
        `[windows, length]`, `length` = the longest window + 2, at least 2);
        `window` and `position` (int64, one per token of `ids.flat_values`)
        say where each token sits in `features` (`position` counts `[CLS]`).
    """
    size = preprocessor.sequence_length - 2
    lengths = ids.row_lengths()
    rows = ids.value_rowids()
    index = tf.range(tf.shape(ids.flat_values, out_type=tf.int64)[0], dtype=tf.int64)
    in_row = index - tf.gather(ids.row_splits, rows)
    per_row = (lengths + size - 1) // size
    window = tf.gather(tf.cumsum(per_row, exclusive=True), rows) + in_row // size
    windows = tf.RaggedTensor.from_value_rowids(
        tf.cast(ids.flat_values, tf.int32), window, nrows=tf.reduce_sum(per_row)
    )
    edge = tf.ones([windows.nrows(), 1], tf.int32)
    packed = tf.concat([edge * preprocessor.cls_id, windows, edge * preprocessor.sep_id], axis=1)
    token_ids = packed.to_tensor(preprocessor.pad_id)
    padding_mask = tf.ones_like(packed, dtype=tf.bool).to_tensor(False)
    # No window at all (empty batch, or no tokens): still a valid [0, 2] input.
    extra = tf.maximum(2 - tf.shape(token_ids)[1], 0)
    token_ids = tf.pad(token_ids, [[0, 0], [0, extra]], constant_values=preprocessor.pad_id)
    padding_mask = tf.pad(padding_mask, [[0, 0], [0, extra]], constant_values=False)
    features = {
        "token_ids": token_ids,
        "segment_ids": tf.zeros_like(token_ids),
        "padding_mask": padding_mask,
    }
    return features, window, in_row % size + 1


def decode_iob2(scheme, word_tags, word_rows):
    """Groups words into entities by the conlleval IOB2 rule, vectorised.

    Args:
        scheme: a `TagScheme`.
        word_tags: int64 `[words]`, the tag of each word, words of a row
            consecutive and in order.
        word_rows: int64 `[words]`, the row (text) of each word.

    Returns:
        `(entity_of_word, opens, num_entities)`: the entity index of each
        word (-1 outside entities, int64), True at each entity's first word,
        and the number of entities (int64 scalar).
    """
    type_ids = tf.gather(tf.constant(scheme.type_ids, tf.int64), word_tags)
    insides = tf.gather(tf.constant(scheme.insides), word_tags)
    previous_type = tf.concat([tf.constant([-1], tf.int64), type_ids], 0)[:-1]
    previous_row = tf.concat([tf.constant([-1], tf.int64), word_rows], 0)[:-1]
    inside = type_ids >= 0
    continues = insides & tf.equal(previous_row, word_rows) & tf.equal(previous_type, type_ids)
    opens = inside & tf.logical_not(continues)
    entity = tf.cumsum(tf.cast(opens, tf.int64)) - 1
    entity = tf.where(inside, entity, tf.constant(-1, tf.int64))
    return entity, opens, tf.reduce_sum(tf.cast(opens, tf.int64))


def tagging_serving_fns(preprocessor, model, tags):
    """The `serving_default` (entities) and `tokens` signatures of a tagger.

    Args:
        preprocessor: a `kerasbert.preprocessing.BertPreprocessor`; windows
            hold `sequence_length - 2` tokens.
        model: a Keras model over BERT's input dict (`token_ids`,
            `segment_ids` int32, `padding_mask` bool, `[batch, seq]`)
            returning logits `[batch, seq, len(tags)]`.
        tags: the IOB2 tags of the model's outputs, e.g.
            `["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]`.

    Returns:
        `{contract.SERVING_DEFAULT: (fn, input_signature),
        contract.TOKENS_SIGNATURE: (fn, input_signature)}` for
        `kerasbert.export.saved_model.save_serving_archive` (track
        `preprocessor` and `model`). Both take `text` (tf.string `[batch]`).

        `serving_default` returns, padded to the batch's largest entity
        count (`[batch, 0]` when no text has one): `entity_labels` (the type,
        "" padding), `entity_starts`, `entity_ends` (int64 code point offsets
        into the raw text, -1 padding), `entity_texts` (the raw text of the
        span, ""), `entity_scores` (float32, 0) and `num_entities` (int64
        `[batch]`).

        `tokens` returns each text's WordPieces (no `[CLS]`/`[SEP]`), padded
        to the batch's longest text: `tokens` (""), `token_labels` (the
        argmax tag of that WordPiece itself, continuations included, ""),
        `token_probabilities` (its probability, float32, 0), `token_starts`,
        `token_ends` (int64, -1).

    Raises:
        ValueError: for a tag list that is not IOB2.
    """
    scheme = TagScheme.from_tags(tags)
    tag_names = tf.constant(scheme.tags, tf.string)
    type_names = tf.constant(scheme.types or ("",), tf.string)
    text_spec = [tf.TensorSpec([None], tf.string, name=contract.TEXT)]

    def token_predictions(text):
        ids, starts, ends = preprocessor.tokenize_with_raw_offsets(text)
        features, window, position = pack_windows(preprocessor, ids)
        logits = model(features, training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        per_token = tf.gather_nd(probabilities, tf.stack([window, position], axis=1))
        per_token = tf.reshape(per_token, [-1, len(scheme.tags)])
        tag = tf.argmax(per_token, axis=-1, output_type=tf.int64)
        return ids, starts, ends, tag, tf.reduce_max(per_token, axis=-1)

    def serve(text):
        ids, starts, ends, tag, probability = token_predictions(text)
        batch = tf.shape(text, out_type=tf.int64)[0]
        rows = ids.value_rowids()
        index = tf.range(tf.shape(rows, out_type=tf.int64)[0], dtype=tf.int64)
        first_in_row = tf.equal(index, tf.gather(ids.row_splits, rows))
        word_starts = preprocessor.word_start_mask(ids.flat_values) | first_in_row
        word = tf.cumsum(tf.cast(word_starts, tf.int64)) - 1
        num_words = tf.reduce_sum(tf.cast(word_starts, tf.int64))
        word_rows = tf.boolean_mask(rows, word_starts)
        word_tags = tf.boolean_mask(tag, word_starts)
        word_probability = tf.boolean_mask(probability, word_starts)
        word_begin = tf.boolean_mask(starts.flat_values, word_starts)
        word_end = tf.math.unsorted_segment_max(ends.flat_values, word, num_words)

        entity, opens, num_entities = decode_iob2(scheme, word_tags, word_rows)
        inside = entity >= 0
        members = tf.boolean_mask(entity, inside)
        entity_rows = tf.boolean_mask(word_rows, opens)
        entity_types = tf.gather(tf.constant(scheme.type_ids, tf.int64), tf.boolean_mask(word_tags, opens))
        entity_starts = tf.boolean_mask(word_begin, opens)
        entity_ends = tf.math.unsorted_segment_max(tf.boolean_mask(word_end, inside), members, num_entities)
        entity_scores = tf.math.unsorted_segment_mean(tf.boolean_mask(word_probability, inside), members, num_entities)
        entity_texts = tf.strings.substr(
            tf.gather(text, entity_rows), entity_starts, entity_ends - entity_starts, unit="UTF8_CHAR"
        )

        def padded(values, default):
            ragged = tf.RaggedTensor.from_value_rowids(values, entity_rows, nrows=batch)
            return ragged.to_tensor(default)

        return {
            contract.ENTITY_LABELS: padded(tf.gather(type_names, entity_types), ""),
            contract.ENTITY_STARTS: padded(entity_starts, tf.constant(-1, tf.int64)),
            contract.ENTITY_ENDS: padded(entity_ends, tf.constant(-1, tf.int64)),
            contract.ENTITY_TEXTS: padded(entity_texts, ""),
            contract.ENTITY_SCORES: padded(entity_scores, 0.0),
            contract.NUM_ENTITIES: tf.RaggedTensor.from_value_rowids(
                entity_rows, entity_rows, nrows=batch
            ).row_lengths(),
        }

    def tokens(text):
        ids, starts, ends, tag, probability = token_predictions(text)

        def padded(values, default):
            return ids.with_flat_values(values).to_tensor(default)

        return {
            contract.TOKENS: padded(preprocessor.id_to_token(ids.flat_values), ""),
            contract.TOKEN_LABELS: padded(tf.gather(tag_names, tag), ""),
            contract.TOKEN_PROBABILITIES: padded(probability, 0.0),
            contract.TOKEN_STARTS: padded(starts.flat_values, tf.constant(-1, tf.int64)),
            contract.TOKEN_ENDS: padded(ends.flat_values, tf.constant(-1, tf.int64)),
        }

    return {
        contract.SERVING_DEFAULT: (serve, text_spec),
        contract.TOKENS_SIGNATURE: (tokens, text_spec),
    }
