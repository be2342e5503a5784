"""The serving contract: task, signature, input and output names, and metadata.

This is the one place that names what an export takes and returns. Export,
client, UI and tests import it; it imports neither TensorFlow nor numpy, so
the client and the UI stay quick to start.

A served model says what it does through the TF Serving API itself: every
kerasbert export has a `metadata` signature with no inputs, returning one
scalar string, the JSON of `ExportMetadata`. `PredictionService.Predict` on
that signature works against stock `tensorflow_model_server` and against
`python -m kerasbert.serve` alike, so a client never guesses the task from
output names. (A copy of the same JSON is in `assets.extra/kerasbert.json`
for people and tools that read the export folder.)

Example:

    from kerasbert import contract
    contract.signatures_for("token_classification")["serving_default"].outputs
    # ('entity_labels', 'entity_starts', 'entity_ends', 'entity_texts',
    #  'entity_scores', 'num_entities')
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

# Bump when the metadata's meaning changes incompatibly.
METADATA_VERSION = 1

# ---------------------------------------------------------------------------
# Task names (the registry keys of `kerasbert.tasks`).
# ---------------------------------------------------------------------------
CLASSIFICATION = "classification"
REGRESSION = "regression"
EMBEDDING = "embedding"
TOKEN_CLASSIFICATION = "token_classification"
QUESTION_ANSWERING = "question_answering"
TASKS = (CLASSIFICATION, REGRESSION, EMBEDDING, TOKEN_CLASSIFICATION, QUESTION_ANSWERING)

# ---------------------------------------------------------------------------
# Signature names.
# ---------------------------------------------------------------------------
SERVING_DEFAULT = "serving_default"
TOKENS_SIGNATURE = "tokens"
METADATA_SIGNATURE = "metadata"

# ---------------------------------------------------------------------------
# Input names.
# ---------------------------------------------------------------------------
TEXT = "text"
TEXT_PAIR = "text_pair"
QUESTION = "question"  # question answering: tf.string [batch]
CONTEXT = "context"  # the paragraph the answer is taken from, tf.string [batch]

# ---------------------------------------------------------------------------
# Output names.
# ---------------------------------------------------------------------------
METADATA = "metadata"  # scalar tf.string: ExportMetadata JSON

# classification
PROBABILITIES = "probabilities"  # float32 [batch, classes]
LABEL_IDS = "label_ids"  # int64 [batch]
LABELS = "labels"  # string [batch]
CLASS_NAMES = "class_names"  # string [batch, classes]
# regression
SCORE = "score"  # float32 [batch]
# embedding
EMBEDDINGS = "embeddings"  # float32 [batch, dim]
TOKEN_EMBEDDINGS = "token_embeddings"  # float32 [batch, sequence_length, hidden]
TOKENS = "tokens"  # string [batch, sequence_length]: WordPieces, "" at padding
MASK = "mask"  # int32 [batch, sequence_length]: 1 at real tokens
# token classification (entities); offsets are Unicode code points into the
# raw input, so `text[start:end]` in Python is the entity.
ENTITY_LABELS = "entity_labels"  # string [batch, max_entities], "" padding
ENTITY_STARTS = "entity_starts"  # int64 [batch, max_entities], -1 padding
ENTITY_ENDS = "entity_ends"  # int64 [batch, max_entities], -1 padding
ENTITY_TEXTS = "entity_texts"  # string [batch, max_entities], "" padding
ENTITY_SCORES = "entity_scores"  # float32 [batch, max_entities], 0 padding
NUM_ENTITIES = "num_entities"  # int64 [batch]
TOKEN_LABELS = "token_labels"  # string [batch, tokens]: the tag of each WordPiece
TOKEN_PROBABILITIES = "token_probabilities"  # float32 [batch, tokens]: its probability
TOKEN_STARTS = "token_starts"  # int64 [batch, tokens]: code point offsets, -1 padding
TOKEN_ENDS = "token_ends"  # int64 [batch, tokens]
# question answering (extractive): offsets are Unicode code points into the raw
# context, so `context[start:end] == answer` in Python; -1 (and "") when the
# context has no candidate span (e.g. it is empty).
ANSWER = "answer"  # string [batch]: the best span, a substring of the raw context
START = "start"  # int64 [batch]
END = "end"  # int64 [batch]
# SCORE (float32 [batch]) is the best span's softmax probability among the n-best.
ANSWERS = "answers"  # string [batch, n_best], "" padding
ANSWER_STARTS = "answer_starts"  # int64 [batch, n_best], -1 padding
ANSWER_ENDS = "answer_ends"  # int64 [batch, n_best], -1 padding
ANSWER_SCORES = "answer_scores"  # float32 [batch, n_best], 0 padding


@dataclasses.dataclass(frozen=True)
class Signature:
    """The names a signature takes and returns."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def as_dict(self) -> dict[str, list[str]]:
        return {"inputs": list(self.inputs), "outputs": list(self.outputs)}


_METADATA_SIG = Signature((), (METADATA,))
_CLASSIFY_OUT = (PROBABILITIES, LABEL_IDS, LABELS, CLASS_NAMES)
_ENTITY_OUT = (ENTITY_LABELS, ENTITY_STARTS, ENTITY_ENDS, ENTITY_TEXTS, ENTITY_SCORES, NUM_ENTITIES)
_TOKEN_TAG_OUT = (TOKENS, TOKEN_LABELS, TOKEN_PROBABILITIES, TOKEN_STARTS, TOKEN_ENDS)
# The `tokens` signature of classification, regression and question answering exports: one text's
# WordPieces (no [CLS]/[SEP], "" padding) with code point offsets into it (-1 padding).
_TEXT_TOKENS_SIG = Signature((TEXT,), (TOKENS, TOKEN_STARTS, TOKEN_ENDS))
_ANSWER_OUT = (ANSWER, START, END, SCORE, ANSWERS, ANSWER_STARTS, ANSWER_ENDS, ANSWER_SCORES)


def signatures_for(task: str, text_pair: bool = False) -> dict[str, Signature]:
    """The signatures an export of `task` has (the `metadata` one included).

    Raises:
        ValueError: for a task name not in `TASKS`.
    """
    inputs = (TEXT, TEXT_PAIR) if text_pair else (TEXT,)
    if task == CLASSIFICATION:
        sigs = {SERVING_DEFAULT: Signature(inputs, _CLASSIFY_OUT), TOKENS_SIGNATURE: _TEXT_TOKENS_SIG}
    elif task == REGRESSION:
        sigs = {SERVING_DEFAULT: Signature(inputs, (SCORE,)), TOKENS_SIGNATURE: _TEXT_TOKENS_SIG}
    elif task == EMBEDDING:
        sigs = {
            SERVING_DEFAULT: Signature((TEXT,), (EMBEDDINGS,)),
            TOKENS_SIGNATURE: Signature((TEXT,), (TOKEN_EMBEDDINGS, TOKENS, MASK)),
        }
    elif task == TOKEN_CLASSIFICATION:
        sigs = {
            SERVING_DEFAULT: Signature((TEXT,), _ENTITY_OUT),
            TOKENS_SIGNATURE: Signature((TEXT,), _TOKEN_TAG_OUT),
        }
    elif task == QUESTION_ANSWERING:
        sigs = {SERVING_DEFAULT: Signature((QUESTION, CONTEXT), _ANSWER_OUT), TOKENS_SIGNATURE: _TEXT_TOKENS_SIG}
    else:
        raise ValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    sigs[METADATA_SIGNATURE] = _METADATA_SIG
    return sigs


@dataclasses.dataclass
class ExportMetadata:
    """What an export says about itself (the `metadata` signature's JSON).

    Attributes:
        task: one of `TASKS`.
        signatures: `{name: {"inputs": [...], "outputs": [...]}}`.
        preprocessing: `sequence_length`, `lowercase`, `vocabulary_size`.
        task_config: the task's own facts, e.g. `class_names` and
            `text_pair` (classification), `entity_types` (token
            classification), `pooling` (embedding), `max_answer_length`
            and `n_best` (question answering).
        extra: anything else (dev metrics, training file, encoder size...).
    """

    task: str
    signatures: dict[str, Any]
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)
    task_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: int = METADATA_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ExportMetadata:
        """Parses the `metadata` signature's output.

        Raises:
            ValueError: not JSON, not an object, or without a known `task`.
        """
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"export metadata is not JSON: {e}") from e
        if not isinstance(data, dict) or data.get("task") not in TASKS:
            raise ValueError(f"export metadata names no known task (tasks: {', '.join(TASKS)})")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})
