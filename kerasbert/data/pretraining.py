"""BERT pretraining input pipeline: raw text -> NSP pairs -> dynamic MLM masks.

What google-research/bert's `create_pretraining_data.py` did offline, done
here in two stages:

1. **Instances** (Python, once, deterministic under `seed`): read documents,
   split them into sentences, tokenize with the foundation's
   `BertPreprocessor`, and cut each document into sentence-pair segments of
   up to `max_seq_length - 3` tokens (`short_seq_prob` of them shorter),
   with segment B the true continuation (NSP label 0, "IsNext") or, with
   probability 1/2, a stretch of another document (label 1, "random") –
   Google's algorithm and label convention.
2. **Stream** (`tf.data`, pure TF ops): example `i` of the stream is
   instance `index_shuffle(i mod n, seed, epoch)` – a fresh permutation per
   epoch – packed as `[CLS] A [SEP] B [SEP]` by `BertPreprocessor.pack` and
   masked with randomness keyed on `(seed, i)` alone: 15% of the non-special
   tokens, 80% `[MASK]` / 10% random token / 10% unchanged, at most
   `max_predictions_per_seq`, optionally whole words. Masks therefore change
   every epoch, are identical for the same seed, and do not depend on how the
   stream is batched or sharded across replicas/workers (the property the
   MirroredStrategy-vs-one-device parity test relies on). The pipeline holds
   no Python state, so a `tf.train.Checkpoint` of its iterator (or
   `start_example=`) resumes it exactly.

Two corpus layouts are read (`input_format`):
* "bert": one sentence per line, blank lines between documents (Google's).
* "lines": one document per line (e.g. WikiText paragraphs); lines are split
  into sentences with a rule-based splitter.
"auto" picks "bert" for files that contain blank lines, else "lines".
"""

import dataclasses
import math
import random
import re

import numpy as np
import tensorflow as tf

from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor

INPUT_FORMATS = ("auto", "bert", "lines")

# NSP labels, Google's convention.
IS_NEXT = 0
RANDOM_NEXT = 1

# Sentence splitting for one-document-per-line corpora: a run of . ! ? (plus
# closing quotes/brackets) followed by whitespace and something that starts a
# sentence, or a CJK full stop / exclamation / question mark.
_SENTENCE_END = re.compile(
    r"[.!?]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])"
    r"|[。！？]+[”’」』）]*\s*"
)
# Words after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs no mt gen col lt sgt capt rev inc ltd co "
    "jan feb mar apr jun jul aug sep sept oct nov dec fig e.g i.e etc".split()
)


def split_sentences(text):
    """Splits a paragraph into sentences (rule-based, language-light).

    Splits after `.`, `!` or `?` followed by whitespace and an upper-case
    letter, digit or opening quote, except after common abbreviations and
    single-letter initials; and after CJK `。！？`.

    Example:

    >>> split_sentences("He left . Dr. Who stayed! 2 days later it rained.")
    ['He left .', 'Dr. Who stayed!', '2 days later it rained.']
    >>> split_sentences("今天下雨。我们在家！")
    ['今天下雨。', '我们在家！']
    """
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        before = text[start : match.start()].rsplit(None, 1)
        last_word = before[-1].lower() if before else ""
        if match.group(0)[0] == "." and (last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha())):
            continue
        sentence = text[start : match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def _expand_files(files):
    if isinstance(files, (str, bytes)) or hasattr(files, "__fspath__"):
        files = [files]
    paths = []
    for pattern in files:
        pattern = str(pattern)
        matches = sorted(tf.io.gfile.glob(pattern))
        if not matches:
            raise ValueError(f"no input file matches {pattern!r}")
        paths.extend(matches)
    return paths


def read_documents(files, input_format="auto"):
    """Reads raw-text corpus files into documents, each a list of sentences.

    Args:
        files: a path or glob, or a list of them (`gs://` works too).
        input_format: "bert" (sentence per line, blank line between
            documents), "lines" (document per line, split into sentences) or
            "auto" (per file: "bert" if it has blank lines, else "lines").

    Returns:
        A list of documents; each is a non-empty list of sentence strings.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "corpus.txt"
    >>> _ = path.write_text("One. Two.\\nThree.\\n")
    >>> read_documents(str(path))
    [['One.', 'Two.'], ['Three.']]
    """
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
    documents = []
    for path in _expand_files(files):
        with tf.io.gfile.GFile(path, "r") as f:
            lines = [line.strip() for line in f.read().splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        fmt = input_format
        if fmt == "auto":
            fmt = "bert" if "" in lines else "lines"
        if fmt == "lines":
            documents.extend(doc for doc in (split_sentences(line) for line in lines) if doc)
            continue
        document = []
        for line in lines + [""]:
            if line:
                document.append(line)
            elif document:
                documents.append(document)
                document = []
    return documents


def tokenize_documents(documents, preprocessor, chunk_size=4096):
    """WordPiece ids of every sentence: a list of lists of int32 arrays.

    Sentences that tokenize to nothing are dropped, then empty documents.
    """
    sentences = [s for doc in documents for s in doc]
    ids = []
    for start in range(0, len(sentences), chunk_size):
        ragged = preprocessor.tokenize(tf.constant(sentences[start : start + chunk_size]))
        values = ragged.flat_values.numpy().astype(np.int32)
        ids.extend(np.split(values, ragged.row_splits.numpy()[1:-1]))
    tokenized, k = [], 0
    for doc in documents:
        sents = [s for s in ids[k : k + len(doc)] if len(s)]
        k += len(doc)
        if sents:
            tokenized.append(sents)
    return tokenized


def split_holdout(documents, holdout_fraction):
    """Deterministically splits documents into (train, held-out) lists.

    The held-out documents are a fixed pseudo-random subset (independent of
    the training seed), so evaluation lines stay the same across runs.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    order = list(range(len(documents)))
    random.Random(20181011).shuffle(order)
    held = set(order[: int(round(len(documents) * holdout_fraction))])
    train = [d for i, d in enumerate(documents) if i not in held]
    heldout = [d for i, d in enumerate(documents) if i in held]
    return train, heldout


@dataclasses.dataclass
class PretrainingInstances:
    """Sentence-pair instances (not yet packed or masked), flat numpy arrays.

    Attributes:
        a_values, a_splits: token ids of segment A, as ragged values/row_splits.
        b_values, b_splits: same for segment B.
        nsp_labels: int32 `[n]`, 0 = B follows A, 1 = B is from another document.
        a_documents, b_documents: int32 `[n]`, the source document of A and B.
        max_seq_length: the packed length the instances were cut for.
    """

    a_values: np.ndarray
    a_splits: np.ndarray
    b_values: np.ndarray
    b_splits: np.ndarray
    nsp_labels: np.ndarray
    a_documents: np.ndarray
    b_documents: np.ndarray
    max_seq_length: int

    def __len__(self):
        return len(self.nsp_labels)

    def segment(self, index, which="a"):
        """Token ids of segment A or B of instance `index`."""
        values, splits = (self.a_values, self.a_splits) if which == "a" else (self.b_values, self.b_splits)
        return values[splits[index] : splits[index + 1]]


def _truncate_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """Google's `truncate_seq_pair`: trim the longer side, front or back at random."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _document_instances(documents, doc_index, max_seq_length, short_seq_prob, rng, balance):
    """Google's `create_instances_from_document`, yielding tuples.

    Deliberate differences, all to keep NSP at 50/50 on corpora of short
    paragraphs (Google's code gives ~69% "random" on WikiText lines, since a
    one-sentence chunk can only be paired with a random segment):
    * a chunk that holds one sentence takes the next one too when there is
      one, and a chunk that would leave a single sentence at the end of the
      document takes it as well;
    * when the chunk can go either way, the choice is a fair coin only while
      the labels so far are balanced, otherwise the under-represented label
      (`balance` = #random - #next so far, shared across documents);
    * the short target length is drawn per instance, not per document, and
      pairs are truncated to it (Google truncates to the maximum, so its
      "short" pairs of long sentences were not short).
    """
    document = documents[doc_index]
    max_num_tokens = max_seq_length - 3

    def draw_target():
        if rng.random() < short_seq_prob:
            return rng.randint(2, max_num_tokens)
        return max_num_tokens

    target = draw_target()
    chunk, length, i = [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        remaining = len(document) - 1 - i
        if remaining and (length < target or len(chunk) == 1 or remaining == 1):
            i += 1
            continue
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        tokens_a = [t for s in chunk[:a_end] for t in s]
        coin = rng.random() < 0.5
        if len(chunk) == 1 or (coin if balance[0] == 0 else balance[0] < 0):
            label = RANDOM_NEXT
            target_b = max(1, target - len(tokens_a))
            other = rng.randrange(len(documents) - 1)
            other += other >= doc_index
            random_document = documents[other]
            tokens_b = []
            for j in range(rng.randrange(len(random_document)), len(random_document)):
                tokens_b.extend(random_document[j])
                if len(tokens_b) >= target_b:
                    break
            i -= len(chunk) - a_end  # put the unused sentences back
            b_doc = other
        else:
            label = IS_NEXT
            tokens_b = [t for s in chunk[a_end:] for t in s]
            b_doc = doc_index
        balance[0] += 1 if label == RANDOM_NEXT else -1
        _truncate_pair(tokens_a, tokens_b, target, rng)
        yield tokens_a, tokens_b, label, b_doc
        chunk, length = [], 0
        target = draw_target()
        i += 1


def create_instances(documents, max_seq_length=128, short_seq_prob=0.1, dupe_factor=1, seed=0):
    """Cuts tokenized documents into NSP sentence-pair instances.

    Args:
        documents: list of documents, each a list of sentences given as
            sequences of token ids (see `tokenize_documents`). At least two
            non-empty documents are needed (random next segments come from a
            different document).
        max_seq_length: packed length; A + B get at most `max_seq_length - 3`.
        short_seq_prob: probability of a shorter random target length
            (2..max) so the model also sees short sequences.
        dupe_factor: passes over the corpus with different pairings (one
            epoch of the stream then covers all passes).
        seed: seeds Python's `random.Random`; same seed, same instances.

    Returns:
        A `PretrainingInstances`.

    Example:

    >>> docs = [[[5, 6], [7, 8]], [[9, 10, 11]], [[12], [13, 14]]]
    >>> inst = create_instances(docs, max_seq_length=16, seed=1)
    >>> len(inst) > 0, set(inst.nsp_labels.tolist()) <= {0, 1}
    (True, True)
    """
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length must be at least 5, got {max_seq_length}")
    documents = [[list(map(int, s)) for s in doc if len(s)] for doc in documents]
    documents = [doc for doc in documents if doc]
    if len(documents) < 2:
        raise ValueError(
            "need at least two non-empty documents for next-sentence prediction "
            f"(got {len(documents)}); separate documents with blank lines or put "
            "one document per line"
        )
    rng = random.Random(seed)
    balance = [0]
    a, b, labels, a_docs, b_docs = [], [], [], [], []
    for _ in range(int(dupe_factor)):
        for doc_index in range(len(documents)):
            for tokens_a, tokens_b, label, b_doc in _document_instances(
                documents, doc_index, max_seq_length, short_seq_prob, rng, balance
            ):
                a.append(tokens_a)
                b.append(tokens_b)
                labels.append(label)
                a_docs.append(doc_index)
                b_docs.append(b_doc)

    def ragged(rows):
        splits = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(r) for r in rows], out=splits[1:])
        values = np.fromiter((t for r in rows for t in r), np.int32, count=int(splits[-1]))
        return values, splits

    a_values, a_splits = ragged(a)
    b_values, b_splits = ragged(b)
    return PretrainingInstances(
        a_values,
        a_splits,
        b_values,
        b_splits,
        np.asarray(labels, np.int32),
        np.asarray(a_docs, np.int32),
        np.asarray(b_docs, np.int32),
        int(max_seq_length),
    )


def _as_preprocessor(vocabulary, lowercase, max_seq_length):
    if isinstance(vocabulary, BertPreprocessor):
        return vocabulary
    return BertPreprocessor(vocabulary, lowercase=lowercase, sequence_length=max_seq_length)


def build_instances(
    files,
    vocabulary,
    *,
    lowercase=True,
    max_seq_length=128,
    short_seq_prob=0.1,
    dupe_factor=1,
    input_format="auto",
    holdout_fraction=0.0,
    split="train",
    seed=0,
):
    """Reads, tokenizes and pairs a corpus: files -> `PretrainingInstances`.

    Build once and pass the result to `pretraining_dataset` to avoid
    re-reading (e.g. to know `len(instances)` for steps per epoch).

    Args:
        files: path/glob or list of them.
        vocabulary: a vocab path / token list, or a `BertPreprocessor`.
        lowercase: uncased normalisation (when `vocabulary` is not a
            `BertPreprocessor`).
        holdout_fraction, split: keep only the "train" or the "heldout" part
            of a fixed pseudo-random document split.
        Others: see `read_documents` and `create_instances`.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    preprocessor = _as_preprocessor(vocabulary, lowercase, max_seq_length)
    documents = read_documents(files, input_format)
    if holdout_fraction:
        train, heldout = split_holdout(documents, holdout_fraction)
        documents = train if split == "train" else heldout
    tokenized = tokenize_documents(documents, preprocessor)
    return create_instances(tokenized, max_seq_length, short_seq_prob, dupe_factor, seed)


_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(x):
    """SplitMix64's finaliser: a strong 64-bit mixing function (uint64)."""

    def shift(v, n):
        return tf.bitwise.right_shift(v, tf.constant(n, tf.uint64))

    x = tf.bitwise.bitwise_xor(x, shift(x, 30)) * tf.constant(0xBF58476D1CE4E5B9, tf.uint64)
    x = tf.bitwise.bitwise_xor(x, shift(x, 27)) * tf.constant(0x94D049BB133111EB, tf.uint64)
    return tf.bitwise.bitwise_xor(x, shift(x, 31))


def keyed_uniform(seed, keys, length):
    """Uniform floats in [0, 1), `[len(keys), length]`, a pure function of
    `(seed, key, column)`: row r depends only on `keys[r]`, never on which
    batch it is in (stateless ops draw one stream per call, not per row).

    Example:

    >>> a = keyed_uniform(7, tf.constant([3, 4]), 5)
    >>> b = keyed_uniform(7, tf.constant([4]), 5)
    >>> bool(tf.reduce_all(a[1] == b[0]))
    True
    """
    golden = tf.constant(_GOLDEN, tf.uint64)
    row = _splitmix64(tf.constant(seed & (2**64 - 1), tf.uint64) * golden + golden)
    row = _splitmix64(tf.bitwise.bitwise_xor(row, tf.cast(tf.cast(keys, tf.int64), tf.uint64)))
    cols = tf.range(1, length + 1, dtype=tf.int64)
    x = _splitmix64(row[:, None] + tf.cast(cols, tf.uint64)[None, :] * golden)
    top24 = tf.bitwise.right_shift(x, tf.constant(40, tf.uint64))
    return tf.cast(top24, tf.float32) * (1.0 / (1 << 24))


def _keyed_permutation(index, seed, key, max_index):
    """`index_shuffle` with a per-element key: a pseudo-random bijection of
    `[0, max_index]` chosen by `(seed, key)`, applied elementwise.

    Calls the raw op because the Python wrapper mis-pads batched seeds.
    """
    index = tf.cast(index, tf.int64)
    key = tf.broadcast_to(tf.cast(key, tf.int64), tf.shape(index))
    seeds = tf.stack([tf.fill(tf.shape(index), tf.constant(seed, tf.int64)), key, tf.zeros_like(index)], axis=1)
    return tf.raw_ops.RandomIndexShuffle(
        index=index,
        seed=seeds,
        max_index=tf.fill(tf.shape(index), tf.constant(max_index, tf.int64)),
    )


class DynamicMasker:
    """BERT's masked-LM corruption, vectorised over a batch, stateless.

    Each row is corrupted with randomness derived from `(seed, row_key)`
    only, via `tf.random.experimental.index_shuffle` used as a keyed hash,
    so a row gets the same mask whatever batch it is in.

    Selection (per row): `n = min(max_predictions, max(1, round(rate *
    #candidates)))` with candidates the non-special tokens; words (a piece
    plus its `##` continuations when `whole_word_masking`, else single
    tokens) are taken in random order while the running total of pieces stays
    <= n. Each selected token becomes `[MASK]` (80%), a random non-special
    token (10%) or stays (10%).

    Args:
        vocabulary: list of tokens.
        special_token_ids: ids never masked (and not used as random tokens).
        mask_id: id of `[MASK]`.
        max_predictions: P, width of the position/label outputs.
        masked_lm_prob, mask_token_rate, random_token_rate: the 15/80/10.
        whole_word_masking: mask all pieces of a word together.

    Example:

    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##c"]
    >>> masker = DynamicMasker(vocab, [0, 1, 2, 3, 4], 4, max_predictions=2)
    >>> out = masker(tf.constant([[2, 5, 6, 7, 3, 0]]), tf.constant([7]), seed=1)
    >>> out["mask_positions"].shape.as_list(), float(out["mlm_weights"][0, 0])
    ([1, 2], 1.0)
    """

    def __init__(
        self,
        vocabulary,
        special_token_ids,
        mask_id,
        max_predictions,
        masked_lm_prob=0.15,
        mask_token_rate=0.8,
        random_token_rate=0.1,
        whole_word_masking=False,
    ):
        if not 0.0 < masked_lm_prob <= 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1], got {masked_lm_prob}")
        if mask_token_rate < 0 or random_token_rate < 0 or mask_token_rate + random_token_rate > 1:
            raise ValueError("mask_token_rate + random_token_rate must be within [0, 1]")
        if int(max_predictions) < 1:
            raise ValueError(f"max_predictions_per_seq must be >= 1, got {max_predictions}")
        special = set(int(i) for i in special_token_ids)
        self.max_predictions = int(max_predictions)
        self.masked_lm_prob = float(masked_lm_prob)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.whole_word_masking = bool(whole_word_masking)
        self.mask_id = int(mask_id)
        self._is_special = tf.constant([i in special for i in range(len(vocabulary))])
        self._is_continuation = tf.constant([t.startswith("##") for t in vocabulary])
        self._random_ids = tf.constant([i for i in range(len(vocabulary)) if i not in special], tf.int32)

    def _uniform(self, length, seed, row_keys, stream):
        """`[rows, length]` floats in [0, 1), a function of (seed, key, stream, col)."""
        return keyed_uniform(seed * 4 + stream, row_keys, length)

    def __call__(self, token_ids, row_keys, seed=0):
        """Masks `token_ids` `[B, L]` (int32) with one key per row (`[B]`).

        Returns:
            dict with `token_ids` (corrupted), `mask_positions` `[B, P]`,
            `mlm_labels` `[B, P]` (original ids, 0 at padding) and
            `mlm_weights` `[B, P]` (float32, 1 for real predictions).
        """
        token_ids = tf.convert_to_tensor(token_ids, tf.int32)
        rows, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        positions = tf.range(length)
        candidate = ~tf.gather(self._is_special, token_ids)
        if self.whole_word_masking:
            prev_candidate = tf.pad(candidate[:, :-1], [[0, 0], [1, 0]])
            continues = tf.gather(self._is_continuation, token_ids) & prev_candidate
            word_start = candidate & ~continues
        else:
            word_start = candidate
        # Word index of each candidate token (0-based), -1 elsewhere.
        word_id = tf.cumsum(tf.cast(word_start, tf.int32), axis=1) - 1
        word_id = tf.where(candidate, word_id, -1)
        word_len = tf.reduce_sum(
            tf.one_hot(word_id, length, dtype=tf.int32), axis=1
        )  # [B, L]: pieces in word k (one_hot(-1) is all zeros)
        num_candidates = tf.reduce_sum(tf.cast(candidate, tf.float32), axis=1)
        num_to_predict = tf.minimum(
            self.max_predictions,
            tf.maximum(1, tf.cast(tf.round(num_candidates * self.masked_lm_prob), tf.int32)),
        )
        u_order = self._uniform(length, seed, row_keys, 0)
        u_action = self._uniform(length, seed, row_keys, 1)
        u_token = self._uniform(length, seed, row_keys, 2)
        # Random order of words: sort word-start positions by a random score.
        score = tf.where(word_start, u_order, 2.0)
        order = tf.argsort(score, axis=1, stable=True)  # word starts first
        ordered_start = tf.gather(word_start, order, batch_dims=1)
        ordered_word = tf.gather(word_id, order, batch_dims=1)
        ordered_len = tf.where(ordered_start, tf.gather(word_len, tf.maximum(ordered_word, 0), batch_dims=1), 0)
        taken = ordered_start & (tf.cumsum(ordered_len, axis=1) <= num_to_predict[:, None])
        # Mark the chosen words, then their tokens.
        chosen_words = tf.scatter_nd(
            tf.stack(
                [tf.repeat(tf.range(rows), length), tf.reshape(tf.maximum(ordered_word, 0), [-1])],
                axis=1,
            ),
            tf.reshape(tf.cast(taken, tf.int32), [-1]),
            [rows, length],
        )
        selected = candidate & (tf.gather(chosen_words, tf.maximum(word_id, 0), batch_dims=1) > 0)
        # Corrupt: [MASK] / random token / unchanged.
        random_ids = tf.gather(
            self._random_ids,
            tf.minimum(
                tf.cast(u_token * tf.cast(tf.size(self._random_ids), tf.float32), tf.int32),
                tf.size(self._random_ids) - 1,
            ),
        )
        replacement = tf.where(
            u_action < self.mask_token_rate,
            self.mask_id,
            tf.where(u_action < self.mask_token_rate + self.random_token_rate, random_ids, token_ids),
        )
        corrupted = tf.where(selected, replacement, token_ids)
        # Selected positions in ascending order, padded to P.
        sort_key = tf.where(selected, positions[None, :], positions[None, :] + length)
        first = tf.argsort(sort_key, axis=1, stable=True)
        width = tf.minimum(self.max_predictions, length)
        first = first[:, :width]
        weights = tf.gather(selected, first, batch_dims=1)
        pad = [[0, 0], [0, self.max_predictions - width]]
        mask_positions = tf.pad(tf.where(weights, first, 0), pad)
        labels = tf.pad(tf.where(weights, tf.gather(token_ids, first, batch_dims=1), 0), pad)
        return {
            "token_ids": corrupted,
            "mask_positions": tf.cast(mask_positions, tf.int32),
            "mlm_labels": labels,
            "mlm_weights": tf.pad(tf.cast(weights, tf.float32), pad),
        }


def default_max_predictions(max_seq_length, masked_lm_prob=0.15):
    """Google's choice: ~`masked_lm_prob * max_seq_length` (20 for 128)."""
    return int(math.ceil(max_seq_length * masked_lm_prob))


def pretraining_dataset(
    source,
    vocabulary,
    batch_size,
    *,
    lowercase=True,
    max_seq_length=128,
    max_predictions_per_seq=None,
    masked_lm_prob=0.15,
    mask_token_rate=0.8,
    random_token_rate=0.1,
    whole_word_masking=False,
    short_seq_prob=0.1,
    dupe_factor=1,
    input_format="auto",
    holdout_fraction=0.0,
    split="train",
    seed=0,
    num_epochs=None,
    repeat=True,
    start_example=0,
    input_context=None,
    num_shards=1,
    shard_index=0,
    drop_remainder=True,
    prefetch=True,
):
    """A `tf.data.Dataset` of BERT pretraining batches (MLM + NSP).

    Args:
        source: corpus files (path/glob or list), or `PretrainingInstances`
            from `build_instances` (then the corpus arguments are ignored).
        vocabulary: a vocab path / token list, or a `BertPreprocessor`.
        lowercase: uncased normalisation (ignored for a `BertPreprocessor`).
        batch_size: batch size of the output; with `input_context` it is the
            GLOBAL batch and each pipeline yields per-replica batches.
        max_seq_length: L. max_predictions_per_seq: P (default 15% of L).
        masked_lm_prob, mask_token_rate, random_token_rate: 0.15/0.8/0.1.
        whole_word_masking: mask all WordPieces of a word together.
        short_seq_prob, dupe_factor, input_format, holdout_fraction,
            split: see `build_instances`.
        seed: seeds pairing, per-epoch order and masks. Same seed, same data.
        num_epochs: passes over the instances; None repeats forever
            (`repeat=False` is the same as `num_epochs=1`).
        start_example: skip the first examples of the global stream (resume
            at `step * global_batch_size`).
        input_context: a `tf.distribute.InputContext`; shards the stream
            over its input pipelines (overrides `num_shards`/`shard_index`).
        num_shards, shard_index: shard the stream by example index; shard k
            gets global examples k, k + num_shards, ...
        drop_remainder: static batch shapes (needed for XLA/TPU).

    Returns:
        Batches `(features, labels, sample_weights)`: features `token_ids`,
        `segment_ids` (int32 [B, L]), `padding_mask` (bool [B, L]),
        `mask_positions` (int32 [B, P]); labels `mlm` (int32 [B, P], 0 at
        padding), `nsp` (int32 [B], 0 = IsNext, 1 = random); sample weights
        `mlm` (float32 [B, P]) and `nsp` (float32 [B], ones).

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "corpus.txt"
    >>> _ = path.write_text("a b. b a.\\na a. b b.\\n")
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "."]
    >>> ds = pretraining_dataset(str(path), vocab, batch_size=2, max_seq_length=16)
    >>> features, labels, weights = next(iter(ds))
    >>> features["token_ids"].shape.as_list(), labels["mlm"].shape.as_list()
    ([2, 16], [2, 3])
    """
    preprocessor = _as_preprocessor(vocabulary, lowercase, max_seq_length)
    if not repeat and num_epochs is None:
        num_epochs = 1
    if isinstance(source, PretrainingInstances):
        instances = source
        if instances.max_seq_length != max_seq_length:
            raise ValueError(
                f"instances were built for max_seq_length={instances.max_seq_length}, not {max_seq_length}"
            )
    else:
        instances = build_instances(
            source,
            preprocessor,
            lowercase=lowercase,
            max_seq_length=max_seq_length,
            short_seq_prob=short_seq_prob,
            dupe_factor=dupe_factor,
            input_format=input_format,
            holdout_fraction=holdout_fraction,
            split=split,
            seed=seed,
        )
    if max_predictions_per_seq is None:
        max_predictions_per_seq = default_max_predictions(max_seq_length, masked_lm_prob)
    if input_context is not None:
        num_shards = input_context.num_input_pipelines
        shard_index = input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    masker = DynamicMasker(
        preprocessor.vocabulary,
        preprocessor.special_token_ids,
        preprocessor.mask_id,
        max_predictions_per_seq,
        masked_lm_prob,
        mask_token_rate,
        random_token_rate,
        whole_word_masking,
    )
    n = len(instances)
    segments_a = tf.RaggedTensor.from_row_splits(instances.a_values, instances.a_splits)
    segments_b = tf.RaggedTensor.from_row_splits(instances.b_values, instances.b_splits)
    nsp_labels = tf.constant(instances.nsp_labels)
    seed = int(seed)

    @tf.autograph.experimental.do_not_convert
    def make_batch(index):
        epoch, k = index // n, index % n
        rows = _keyed_permutation(k, seed, epoch, n - 1)
        packed = preprocessor.pack(
            [tf.gather(segments_a, rows), tf.gather(segments_b, rows)],
            sequence_length=max_seq_length,
        )
        masked = masker(packed["token_ids"], index, seed)
        features = {
            "token_ids": masked["token_ids"],
            "segment_ids": packed["segment_ids"],
            "padding_mask": packed["padding_mask"],
            "mask_positions": masked["mask_positions"],
        }
        nsp = tf.gather(nsp_labels, rows)
        labels = {"mlm": masked["mlm_labels"], "nsp": nsp}
        weights = {"mlm": masked["mlm_weights"], "nsp": tf.ones_like(nsp, tf.float32)}
        batch = (features, labels, weights)
        rows = batch_size if drop_remainder else None  # static shapes for XLA
        for tensor in tf.nest.flatten(batch):
            tensor.set_shape([rows] + tensor.shape.as_list()[1:])
        return batch

    end = n * int(num_epochs) if num_epochs is not None else np.iinfo(np.int64).max
    dataset = tf.data.Dataset.range(int(start_example) + shard_index, end, num_shards)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if prefetch:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return dataset
