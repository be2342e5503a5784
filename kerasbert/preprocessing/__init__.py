"""In-graph text preprocessing (tf-text WordPiece + BERT packing)."""

from kerasbert.preprocessing.bert_preprocessor import SPECIAL_TOKENS, BertPreprocessor, load_vocabulary
