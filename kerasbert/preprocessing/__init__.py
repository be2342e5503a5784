"""In-graph text preprocessing (tf-text WordPiece + BERT packing)."""

from kerasbert.preprocessing.bert_preprocessor import SPECIAL_TOKENS
from kerasbert.preprocessing.bert_preprocessor import BertPreprocessor
from kerasbert.preprocessing.bert_preprocessor import load_vocabulary
