"""The pretraining input pipeline: NSP pairs, dynamic (whole-word) masking, sharding.

Synthetic corpora make every property checkable: document k uses only the
words `d{k}w{j}`, so the source document of any token is known, and words
`xaa`/`##bb`/`##cc` pieces exercise whole-word masking. The WikiText-2 test
uses the real corpus and BERT's uncased vocabulary (skipped without
../shared) and prints the pipeline's throughput.
"""

import random
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import shared_path
from kerasbert.data import pretraining as data
from kerasbert.preprocessing import SPECIAL_TOKENS, BertPreprocessor

NUM_DOCS, WORDS_PER_DOC = 12, 30
PIECES = ["xaa", "xdd", "##bb", "##cc", "##ee"]
VOCAB = (
    list(SPECIAL_TOKENS) + [".", ","] + [f"d{k}w{j}" for k in range(NUM_DOCS) for j in range(WORDS_PER_DOC)] + PIECES
)
SPECIAL_IDS = {VOCAB.index(t) for t in SPECIAL_TOKENS}
MASK_ID = VOCAB.index("[MASK]")
PRE = BertPreprocessor(VOCAB)  # shared: building the tokenizer costs ~0.5 s


def doc_of(token_id):
    token = VOCAB[token_id]
    return int(token[1 : token.index("w")]) if token.startswith("d") else None


def write_corpus(path, seed=0, multi_piece=False, bert_format=True):
    """NUM_DOCS documents of 4..10 sentences; returns the documents."""
    rng = random.Random(seed)
    docs = []
    for k in range(NUM_DOCS):
        sentences = []
        for _ in range(rng.randint(4, 10)):
            words = [f"d{k}w{rng.randrange(WORDS_PER_DOC)}" for _ in range(rng.randint(3, 12))]
            if multi_piece:
                for _ in range(3):
                    words.insert(
                        rng.randrange(len(words) + 1),
                        rng.choice(["xaa", "xdd"])
                        + "".join(rng.choice(["bb", "cc", "ee"]) for _ in range(rng.randint(1, 3))),
                    )
            words[0] = words[0].capitalize()  # lets "lines" corpora split sentences
            sentences.append(" ".join(words) + " .")
        docs.append(sentences)
    if bert_format:
        path.write_text("\n\n".join("\n".join(d) for d in docs) + "\n")
    else:
        path.write_text("".join(" ".join(d) + "\n" for d in docs))
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    write_corpus(path, multi_piece=True)
    return str(path)


def collect(dataset, batches=None):
    """Numpy arrays of all examples: token_ids, segment_ids, positions, labels, weights, nsp."""
    parts = {k: [] for k in ("tokens", "segments", "padding", "positions", "labels", "weights", "nsp")}
    for features, labels, weights in dataset.take(batches) if batches else dataset:
        parts["tokens"].append(features["token_ids"].numpy())
        parts["segments"].append(features["segment_ids"].numpy())
        parts["padding"].append(features["padding_mask"].numpy())
        parts["positions"].append(features["mask_positions"].numpy())
        parts["labels"].append(labels["mlm"].numpy())
        parts["weights"].append(weights["mlm"].numpy())
        parts["nsp"].append(labels["nsp"].numpy())
        np.testing.assert_array_equal(weights["nsp"].numpy(), 1.0)
    return {k: np.concatenate(v) for k, v in parts.items()}


def originals(ex):
    """Token ids with the masked positions restored from the labels."""
    tokens = ex["tokens"].copy()
    rows, cols = np.nonzero(ex["weights"] > 0)
    tokens[rows, ex["positions"][rows, cols]] = ex["labels"][rows, cols]
    return tokens


def test_contract_shapes_and_dtypes(corpus):
    ds = data.pretraining_dataset(corpus, VOCAB, batch_size=4, max_seq_length=32, max_predictions_per_seq=5)
    features, labels, weights = ds.element_spec
    assert {k: (v.dtype, v.shape.as_list()) for k, v in features.items()} == {
        "token_ids": (tf.int32, [4, 32]),
        "segment_ids": (tf.int32, [4, 32]),
        "padding_mask": (tf.bool, [4, 32]),
        "mask_positions": (tf.int32, [4, 5]),
    }
    assert {k: (v.dtype, v.shape.as_list()) for k, v in labels.items()} == {
        "mlm": (tf.int32, [4, 5]),
        "nsp": (tf.int32, [4]),
    }
    assert {k: (v.dtype, v.shape.as_list()) for k, v in weights.items()} == {
        "mlm": (tf.float32, [4, 5]),
        "nsp": (tf.float32, [4]),
    }


def test_segments_nsp_pairs_and_lengths(corpus):
    L = 32
    ds = data.pretraining_dataset(
        corpus, VOCAB, batch_size=16, max_seq_length=L, num_epochs=1, drop_remainder=False, dupe_factor=4, seed=3
    )
    ex = collect(ds)
    tokens = originals(ex)
    cls, sep, pad = (VOCAB.index(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    n, checked = len(tokens), 0
    assert n > 150
    for row, seg, nsp in zip(tokens, ex["segments"], ex["nsp"]):
        length = int((row != pad).sum())
        assert 5 <= length <= L and not (row[length:] != pad).any()
        seps = np.flatnonzero(row == sep)
        assert row[0] == cls and len(seps) == 2 and seps[1] == length - 1
        a, b = row[1 : seps[0]], row[seps[0] + 1 : seps[1]]
        assert len(a) >= 1 and len(b) >= 1
        np.testing.assert_array_equal(seg[: seps[0] + 1], 0)
        np.testing.assert_array_equal(seg[seps[0] + 1 : length], 1)
        docs_a = {doc_of(t) for t in a} - {None}
        docs_b = {doc_of(t) for t in b} - {None}
        assert len(docs_a) <= 1 and len(docs_b) <= 1, "a segment spans one document"
        if not (docs_a and docs_b):
            continue  # a short segment of shared tokens only ("." / "x..")
        checked += 1
        if nsp == data.IS_NEXT:
            assert docs_a == docs_b
        else:
            assert docs_a != docs_b, "a random next segment comes from another document"
    assert checked > 0.8 * n
    assert abs(ex["nsp"].mean() - 0.5) < 0.05


def test_nsp_balance_and_pairing_from_instances(tmp_path):
    path = tmp_path / "lines.txt"
    write_corpus(path, seed=5, bert_format=False)
    inst = data.build_instances(str(path), VOCAB, max_seq_length=24, dupe_factor=5, seed=1)
    labels = inst.nsp_labels
    assert len(inst) > 150 and abs(labels.mean() - 0.5) < 0.02
    assert (inst.a_documents[labels == 1] != inst.b_documents[labels == 1]).all()
    assert (inst.a_documents[labels == 0] == inst.b_documents[labels == 0]).all()
    lengths = np.diff(inst.a_splits) + np.diff(inst.b_splits)
    assert lengths.max() <= 24 - 3 and (np.diff(inst.a_splits) >= 1).all()
    # short_seq_prob gives some clearly shorter pairs, most are near full.
    assert 0.02 < (lengths < 12).mean() < 0.5 and (lengths >= 18).mean() > 0.3
    # Same seed, same instances; another seed pairs differently.
    again = data.build_instances(str(path), VOCAB, max_seq_length=24, dupe_factor=5, seed=1)
    np.testing.assert_array_equal(inst.a_values, again.a_values)
    other = data.build_instances(str(path), VOCAB, max_seq_length=24, dupe_factor=5, seed=2)
    assert not np.array_equal(inst.nsp_labels, other.nsp_labels)


def test_masking_rates_and_special_tokens(corpus):
    ds = data.pretraining_dataset(corpus, VOCAB, batch_size=64, max_seq_length=48, max_predictions_per_seq=12, seed=11)
    ex = collect(ds, batches=40)  # 2560 sequences, ~6 epochs of the corpus
    tokens, orig = ex["tokens"], originals(ex)
    special = np.isin(orig, list(SPECIAL_IDS))
    # Specials and padding are never touched.
    np.testing.assert_array_equal(tokens[special], orig[special])
    w = ex["weights"] > 0
    assert not np.isin(ex["labels"][w], list(SPECIAL_IDS)).any()
    assert (ex["labels"][~w] == 0).all() and (ex["positions"][~w] == 0).all()
    # Weights are a prefix; positions strictly increasing.
    assert (np.diff(w.astype(int), axis=1) <= 0).all()
    for pos, ww in zip(ex["positions"], w):
        assert (np.diff(pos[ww]) > 0).all()
    # 15% of the non-special tokens, per sequence round(0.15 n).
    num_candidates = (~special).sum(1)
    expected = np.minimum(12, np.maximum(1, np.round(0.15 * num_candidates)))
    np.testing.assert_array_equal(w.sum(1), expected)
    rate = w.sum() / num_candidates.sum()
    assert 0.14 < rate < 0.16, rate
    # 80% [MASK], 10% random token, 10% unchanged.
    rows, cols = np.nonzero(w)
    corrupted = tokens[rows, ex["positions"][rows, cols]]
    original = ex["labels"][rows, cols]
    masked = (corrupted == MASK_ID).mean()
    unchanged = (corrupted == original).mean()
    replaced = 1.0 - masked - unchanged
    assert abs(masked - 0.8) < 0.02 and abs(unchanged - 0.1) < 0.015 and abs(replaced - 0.1) < 0.015
    assert not np.isin(corrupted[corrupted != MASK_ID], list(SPECIAL_IDS)).any()
    # Random replacements are spread over the vocabulary.
    random_ids = corrupted[(corrupted != MASK_ID) & (corrupted != original)]
    assert len(set(random_ids.tolist())) > 100


@pytest.mark.parametrize("whole_word", [True, False])
def test_whole_word_masking(corpus, whole_word):
    ds = data.pretraining_dataset(
        corpus,
        VOCAB,
        batch_size=64,
        max_seq_length=48,
        max_predictions_per_seq=12,
        whole_word_masking=whole_word,
        seed=4,
    )
    ex = collect(ds, batches=10)
    orig = originals(ex)
    selected = np.zeros_like(orig, bool)
    rows, cols = np.nonzero(ex["weights"] > 0)
    selected[rows, ex["positions"][rows, cols]] = True
    continuation = np.vectorize(lambda t: VOCAB[t].startswith("##"))(orig)
    continuation[:, 1:] &= ~np.isin(orig[:, :-1], list(SPECIAL_IDS))  # cut by truncation
    partial = whole = 0
    for sel, cont in zip(selected, continuation):
        start = 0
        for i in range(1, len(sel) + 1):
            if i == len(sel) or not cont[i]:
                if i - start > 1:  # a multi-piece word
                    k = sel[start:i].sum()
                    partial += 0 < k < i - start
                    whole += k == i - start
                start = i
    if whole_word:
        assert partial == 0 and whole > 50
        rate = selected.sum() / (~np.isin(orig, list(SPECIAL_IDS))).sum()
        assert 0.12 < rate <= 0.15
    else:
        assert partial > 50


def test_same_seed_same_masks_new_masks_each_epoch(corpus):
    inst = data.build_instances(corpus, VOCAB, max_seq_length=32, seed=0)
    n = len(inst)

    def epochs(seed):
        ds = data.pretraining_dataset(inst, PRE, batch_size=n, max_seq_length=32, num_epochs=2, seed=seed)
        both = collect(ds)
        return [{k: v[e * n : (e + 1) * n] for k, v in both.items()} for e in range(2)]

    first, again, other = epochs(7), epochs(7), epochs(8)
    for a, b in zip(first, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])

    def masks_by_instance(ex):
        return {originals(ex)[i].tobytes(): ex["positions"][i][ex["weights"][i] > 0].tobytes() for i in range(n)}

    e0, e1 = masks_by_instance(first[0]), masks_by_instance(first[1])
    assert e0.keys() == e1.keys() and len(e0) == n  # each epoch is one pass
    changed = np.mean([e0[k] != e1[k] for k in e0])
    assert changed > 0.8, changed
    # The epochs are also shuffled differently.
    assert not np.array_equal(originals(first[0]), originals(first[1]))
    assert not np.array_equal(first[0]["tokens"], other[0]["tokens"])


def test_sharding_resume_and_iterator_checkpoint(corpus, tmp_path):
    inst = data.build_instances(corpus, VOCAB, max_seq_length=32, seed=0)
    kwargs = dict(max_seq_length=32, seed=9)
    full = collect(data.pretraining_dataset(inst, PRE, 8, **kwargs), batches=6)
    # Two shards with half the batch each cover the same global batches,
    # with identical masks (masks are keyed on the global example index).
    shards = [
        collect(data.pretraining_dataset(inst, PRE, 4, num_shards=2, shard_index=k, **kwargs), batches=6)
        for k in range(2)
    ]
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    via_context = collect(data.pretraining_dataset(inst, PRE, 8, input_context=context, **kwargs), batches=6)
    for key in full:
        interleaved = np.empty_like(full[key])
        interleaved[0::2], interleaved[1::2] = shards[0][key], shards[1][key]
        np.testing.assert_array_equal(interleaved, full[key])
        np.testing.assert_array_equal(via_context[key], shards[1][key])
    # start_example resumes the stream mid-way.
    resumed = collect(data.pretraining_dataset(inst, PRE, 8, start_example=16, **kwargs), batches=4)
    for key in full:
        np.testing.assert_array_equal(resumed[key], full[key][16:])
    # The iterator itself is checkpointable (no Python state in the pipeline).
    iterator = iter(data.pretraining_dataset(inst, PRE, 8, **kwargs))
    next(iterator), next(iterator)
    path = tf.train.Checkpoint(data=iterator).save(str(tmp_path / "ckpt"))
    fresh = iter(data.pretraining_dataset(inst, PRE, 8, **kwargs))
    tf.train.Checkpoint(data=fresh).restore(path)
    np.testing.assert_array_equal(next(fresh)[0]["token_ids"].numpy(), full["tokens"][16:24])


def test_reading_formats_and_sentence_splitting(tmp_path):
    bert = tmp_path / "bert.txt"
    bert.write_text("First sentence.\nSecond one.\n\n\nOther doc.\n")
    lines = tmp_path / "lines.txt"
    lines.write_text('Mr. Smith went home . He slept! "Quoted" next. 3 dogs ran.\nShort doc\n')
    assert data.read_documents(str(bert)) == [["First sentence.", "Second one."], ["Other doc."]]
    assert data.read_documents(str(lines)) == [
        ["Mr. Smith went home .", "He slept!", '"Quoted" next.', "3 dogs ran."],
        ["Short doc"],
    ]
    # Forcing a format overrides detection; globs and lists work.
    assert data.read_documents(str(bert), input_format="lines") == [
        ["First sentence."],
        ["Second one."],
        ["Other doc."],
    ]
    assert len(data.read_documents([str(tmp_path / "*.txt")])) == 4
    assert data.split_sentences("今天下雨。我们在家！好") == ["今天下雨。", "我们在家！", "好"]
    with pytest.raises(ValueError, match="at least two"):
        data.create_instances([[[5, 6, 7]]], max_seq_length=16)
    with pytest.raises(ValueError, match="no input file"):
        data.read_documents(str(tmp_path / "missing*.txt"))


def test_holdout_split_is_disjoint_and_fixed(tmp_path):
    path = tmp_path / "lines.txt"
    write_corpus(path, bert_format=False)
    docs = data.read_documents(str(path))
    train, held = data.split_holdout(docs, 0.25)
    assert len(held) == 3 and len(train) == 9
    assert not {tuple(d) for d in train} & {tuple(d) for d in held}
    assert data.split_holdout(docs, 0.25) == (train, held)
    inst = data.build_instances(str(path), VOCAB, max_seq_length=32, holdout_fraction=0.25, split="heldout")
    held_docs = {
        doc_of(int(t))
        for d in held
        for s in d
        for t in BertPreprocessor(VOCAB).tokenize(tf.constant([s])).flat_values.numpy()
    } - {None}
    seen = {doc_of(int(t)) for t in np.concatenate([inst.a_values, inst.b_values])} - {None}
    assert seen == held_docs


def test_wikitext_pipeline_real_corpus():
    corpus = shared_path("data", "wikitext2_raw", "wiki.test.raw.lines.txt")
    vocab = shared_path("data", "vocab", "bert-base-uncased", "vocab.txt")
    pre = BertPreprocessor(str(vocab), sequence_length=128)
    start = time.perf_counter()
    inst = data.build_instances(str(corpus), pre, max_seq_length=128, seed=0)
    build_seconds = time.perf_counter() - start
    labels = inst.nsp_labels
    assert len(inst) > 3000 and abs(labels.mean() - 0.5) < 0.01
    assert (inst.a_documents[labels == 1] != inst.b_documents[labels == 1]).all()
    assert (np.diff(inst.a_splits) + np.diff(inst.b_splits)).max() <= 125
    ds = data.pretraining_dataset(inst, pre, batch_size=64, max_seq_length=128, whole_word_masking=True, seed=0)
    iterator = iter(ds)
    next(iterator)  # warm up (tracing, prefetch threads)
    start = time.perf_counter()
    for _ in range(30):
        next(iterator)
    examples_per_second = 30 * 64 / (time.perf_counter() - start)
    ex = collect(ds, batches=30)
    special = np.isin(originals(ex), pre.special_token_ids)
    rate = (ex["weights"] > 0).sum() / (~special).sum()
    assert 0.13 < rate < 0.16, rate
    print(
        f"\nwikitext2 test: {len(inst)} instances built in {build_seconds:.1f}s; "
        f"pipeline {examples_per_second:.0f} examples/s (L=128, batch 64, whole-word)"
    )
