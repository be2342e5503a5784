"""The sample sentiment dataset and WordPiece vocabulary shipped in the package.

Short synthetic English reviews (products, movies, restaurants) labelled
`negative` / `positive`, written for this project by `generate.py` (seeded,
so `python -m kerasbert.data.sample.generate` rewrites identical files). It is
what `python -m kerasbert.train` fine-tunes on when given no data.

Example:

>>> from kerasbert.data import sample
>>> sample.TRAIN_PATH.name, sample.LABELS
('train.tsv', ('negative', 'positive'))
"""

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent
TRAIN_PATH = SAMPLE_DIR / "train.tsv"
DEV_PATH = SAMPLE_DIR / "dev.tsv"
VOCAB_PATH = SAMPLE_DIR / "vocab.txt"
TEXT_COLUMN = "sentence"
LABEL_COLUMN = "label"
LABELS = ("negative", "positive")
