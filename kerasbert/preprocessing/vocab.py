"""Learn a BERT WordPiece vocabulary from raw text (`python -m kerasbert.train vocab`).

Text is normalised exactly as `BertPreprocessor` will normalise it at
training and serving time (control characters dropped; uncased: NFD, lower
case, accents stripped; cased: NFC), split into words by BERT's basic
tokenizer rules (whitespace, punctuation, every CJK character on its own)
and fed to tf-text's WordPiece learner (`bert_vocab_from_dataset`), which
binary-searches a frequency threshold to land just under the target size.

On top of tf-text we: put BERT's special tokens first with `[PAD]` at id 0
(`[PAD] [UNK] [CLS] [SEP] [MASK]`, then optional `[unused*]`); drop the
`##` forms of CJK characters, which can never be used because a CJK
character is always a word of its own (the CJK characters themselves stay as
whole tokens); and, if the learner overshoots, trim the rarest multi-character
pieces, never single characters, so every seen character stays encodable.
"""

import os
import time

import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bert_vocab

from kerasbert import cli
from kerasbert.preprocessing.bert_preprocessor import SPECIAL_TOKENS, BertPreprocessor


def is_cjk_char(char):
    """True for CJK Unified Ideographs (the ranges Google's BERT splits on).

    >>> is_cjk_char("中"), is_cjk_char("a"), is_cjk_char("の")
    (True, False, False)
    """
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def reserved_tokens(num_unused=0):
    """BERT's special tokens ([PAD] first) plus `num_unused` `[unusedN]` slots.

    >>> reserved_tokens(2)
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[unused0]', '[unused1]']
    """
    return list(SPECIAL_TOKENS) + [f"[unused{i}]" for i in range(int(num_unused))]


def _text_dataset(files=None, texts=None, max_lines=None):
    if (files is None) == (texts is None):
        raise ValueError("give exactly one of files= or texts=")
    if texts is not None:
        dataset = (
            texts
            if isinstance(texts, tf.data.Dataset)
            else tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
        )
    else:
        patterns = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        paths = []
        for pattern in patterns:
            matches = sorted(tf.io.gfile.glob(os.fspath(pattern)))
            if not matches:
                raise ValueError(f"no input file matches {os.fspath(pattern)!r}")
            paths += matches
        dataset = tf.data.TextLineDataset(paths)
    if max_lines:
        dataset = dataset.take(int(max_lines))
    return dataset


def _finalize(vocab, reserved, vocab_size):
    reserved_set = set(reserved)
    body = [t for t in vocab if t not in reserved_set]
    # "##X" for a CJK character X is unreachable: X is always its own word.
    body = [t for t in body if not (t.startswith("##") and len(t) == 3 and is_cjk_char(t[2]))]
    excess = len(reserved) + len(body) - vocab_size
    if excess > 0:
        # The learner lists pieces by falling count after the characters;
        # drop the rarest multi-character pieces, keep every character.
        def is_char(token):
            return len(token) == 1 or (token.startswith("##") and len(token) == 3)

        drop = set()
        for token in reversed(body):
            if len(drop) == excess:
                break
            if not is_char(token):
                drop.add(token)
        body = [t for t in body if t not in drop]
    return list(reserved) + body


def learn_vocabulary(
    files=None,
    *,
    texts=None,
    vocab_size=30522,
    lowercase=True,
    num_unused=0,
    max_unique_chars=1000,
    min_frequency=2,
    max_lines=None,
    num_iterations=4,
):
    """Learns a BERT WordPiece vocabulary.

    Args:
        files: text file path(s) or glob(s), read line by line.
        texts: instead of `files`, a list of strings or a `tf.data.Dataset`
            of scalar strings.
        vocab_size: target size (the result is at most this, usually within
            5%; smaller when the corpus has too few frequent pieces).
        lowercase: uncased vocabulary (lower case, accents stripped); False
            keeps case and accents (cased models).
        num_unused: `[unusedN]` slots after the special tokens (room to add
            task tokens later without resizing embeddings).
        max_unique_chars: alphabet size; words with rarer characters are not
            learned from. Raise for CJK-heavy corpora (bert-base-chinese has
            ~8k characters).
        min_frequency: lowest frequency threshold the learner may use.
        max_lines: learn from at most this many lines.
        num_iterations: WordPiece learner iterations.

    Returns:
        The vocabulary as a list of tokens, special tokens first
        (`[PAD]` = 0, `[UNK]` = 1, `[CLS]` = 2, `[SEP]` = 3, `[MASK]` = 4).

    Example:

    >>> vocab = learn_vocabulary(
    ...     texts=["the cat sat", "The cats sat on the mat"] * 5, vocab_size=40)
    >>> vocab[:5], "the" in vocab, "##s" in vocab
    (['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'], True, True)
    """
    reserved = reserved_tokens(num_unused)
    if vocab_size <= len(reserved):
        raise ValueError(f"vocab_size {vocab_size} leaves no room after {len(reserved)} reserved tokens")
    # Only its `normalize` is used; the trie needs one ordinary token.
    normalizer = BertPreprocessor(list(SPECIAL_TOKENS) + ["a"], lowercase=lowercase)
    texts = (
        _text_dataset(files, texts, max_lines)
        .batch(1024)
        .map(normalizer.normalize, num_parallel_calls=tf.data.AUTOTUNE)
    )
    vocab = bert_vocab.bert_vocab_from_dataset(
        texts.prefetch(tf.data.AUTOTUNE),
        vocab_size=int(vocab_size),
        reserved_tokens=reserved,
        # Already normalised above; the basic tokenizer only splits.
        bert_tokenizer_params=dict(lower_case=False),
        learn_params=dict(
            max_unique_chars=int(max_unique_chars),
            lower_thresh=int(min_frequency),
            num_iterations=int(num_iterations),
        ),
    )
    return _finalize(vocab, reserved, int(vocab_size))


def write_vocabulary(vocab, path):
    """Writes one token per line (BERT's `vocab.txt`)."""
    directory = os.path.dirname(os.fspath(path))
    if directory:
        tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.fspath(path), "w") as f:
        f.write("".join(token + "\n" for token in vocab))


def unk_rate(vocab, texts, lowercase=True):
    """Fraction of WordPiece tokens that are `[UNK]` when `texts` are tokenized.

    >>> unk_rate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"], ["a a b"])
    0.3333333333333333
    """
    pre = BertPreprocessor(vocab, lowercase=lowercase)
    ids = pre.tokenize(tf.constant(list(texts))).flat_values
    total = int(tf.size(ids))
    return float(tf.reduce_sum(tf.cast(ids == pre.unk_id, tf.int32))) / max(total, 1)


def build_parser(prog="python -m kerasbert.train vocab"):
    """Flags of the `vocab` subcommand."""
    p = cli.ArgumentParser(
        prog=prog,
        description="Learn a BERT WordPiece vocab.txt from raw text files "
        "([PAD]=0, [UNK], [CLS], [SEP], [MASK], CJK characters whole).",
    )
    p.add_argument(
        "--input_files",
        nargs="+",
        required=True,
        metavar="PATH",
        help="text files or globs (one sentence, paragraph or document per line)",
    )
    p.add_argument("--output_file", required=True, help="where to write vocab.txt (one token per line)")
    p.add_argument(
        "--vocab_size", type=int, default=30522, help="target vocabulary size, special tokens included (default 30522)"
    )
    p.add_argument(
        "--cased", action="store_true", help="keep case and accents; default uncased (lower case, accents stripped)"
    )
    p.add_argument("--num_unused", type=int, default=0, help="[unusedN] slots after the special tokens (default 0)")
    p.add_argument(
        "--max_unique_chars", type=int, default=1000, help="alphabet size; raise for CJK-heavy text (default 1000)"
    )
    p.add_argument(
        "--min_frequency", type=int, default=2, help="lowest piece frequency the learner may accept (default 2)"
    )
    p.add_argument("--max_lines", type=int, default=None, help="learn from at most this many lines (default: all)")
    cli.add_verbose_flag(p)
    return p


def main(args):
    """Runs `vocab`: learns, writes the file, prints size and [UNK] rate."""
    for flag in ("vocab_size", "max_unique_chars", "min_frequency"):
        if getattr(args, flag) < 1:
            raise cli.UsageError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.num_unused < 0:
        raise cli.UsageError(f"--num_unused must be >= 0, got {args.num_unused}")
    for pattern in args.input_files:
        if not tf.io.gfile.glob(pattern):
            raise cli.UsageError(f"--input_files: no such file {pattern!r} (use --input_files PATH ...)")
    if args.vocab_size <= len(reserved_tokens(args.num_unused)):
        raise cli.UsageError(
            f"--vocab_size {args.vocab_size} leaves no room after the special tokens and --num_unused slots"
        )
    start = time.time()
    vocab = learn_vocabulary(
        args.input_files,
        vocab_size=args.vocab_size,
        lowercase=not args.cased,
        num_unused=args.num_unused,
        max_unique_chars=args.max_unique_chars,
        min_frequency=args.min_frequency,
        max_lines=args.max_lines,
    )
    write_vocabulary(vocab, args.output_file)
    sample = [line.numpy().decode("utf-8") for line in _text_dataset(args.input_files).take(2000)]
    rate = unk_rate(vocab, sample, lowercase=not args.cased) if sample else 0.0
    print(
        f"wrote {args.output_file}: {len(vocab)} tokens "
        f"({'cased' if args.cased else 'uncased'}, target {args.vocab_size}) in "
        f"{time.time() - start:.1f}s; [UNK] rate on the first {len(sample)} lines: {rate:.4%}"
    )
    return 0
