"""Raw-string SavedModels for TF Serving, one exporter for every task.

Every export takes text and returns what a person wants. The graph contains
the preprocessing layer (tf-text ops) and the Keras model (TF core ops) and
nothing else – no `py_function` – so stock TF Serving (with the tf-text ops)
and a process that imports only `tensorflow` + `tensorflow_text` can load it.
Built on Keras 3's `ExportArchive`, which tracks the Keras variables.

`export_task` writes the task's own signatures (`Task.serving_endpoints`)
plus the zero-input `metadata` signature of `kerasbert.contract`, whose
scalar string is the export's `ExportMetadata` JSON; the same JSON is in
`assets.extra/kerasbert.json`. `assets.extra/tf_serving_warmup_requests`
holds a few Predict requests that model servers replay before serving.
"""

import json
import os

import keras
import tensorflow as tf

from kerasbert import contract
from kerasbert.export.layout import write_versioned


class ExportError(ValueError):
    """The export cannot be written where asked; the message names the flag."""


def save_serving_archive(path, tracked, endpoints):
    """Writes a SavedModel with the given signatures.

    Args:
        path: output folder.
        tracked: Keras layers/models whose variables the graph uses.
        endpoints: `{signature_name: (fn, input_signature)}`; `fn` may be a
            `tf.function` with its own input signature, then pass `None`.
    """
    archive = keras.export.ExportArchive()
    for obj in tracked:
        archive.track(obj)
    for name, (fn, signature) in endpoints.items():
        if signature is None:
            archive.add_endpoint(name, fn)
        else:
            archive.add_endpoint(name, fn, signature)
    archive.write_out(path, verbose=False)


def metadata_endpoint(metadata_json):
    """The `metadata` signature: no inputs, one scalar string (the JSON)."""
    return (
        tf.function(
            lambda: {contract.METADATA: tf.constant(metadata_json, dtype=tf.string)},
            input_signature=[],
        ),
        None,
    )


def text_tokens_endpoint(preprocessor):
    """The `tokens` signature of classification, regression and QA exports: `text` (tf.string `[batch]`)
    -> each text's WordPieces `tokens` (no `[CLS]`/`[SEP]`, "" padding) and `token_starts`/`token_ends`
    (int64 code point offsets into the raw text, -1 padding), padded to the batch's longest text, so
    `text[start:end]` is each token's source (what a client or UI shows as the model's tokens)."""

    def tokens(text):
        ids, starts, ends = preprocessor.tokenize_with_raw_offsets(text)
        return {
            contract.TOKENS: ids.with_flat_values(preprocessor.id_to_token(ids.flat_values)).to_tensor(""),
            contract.TOKEN_STARTS: starts.to_tensor(tf.constant(-1, tf.int64)),
            contract.TOKEN_ENDS: ends.to_tensor(tf.constant(-1, tf.int64)),
        }

    return tokens, [tf.TensorSpec([None], tf.string, name=contract.TEXT)]


def export_metadata(task, preprocessor, extra=None):
    """The export's metadata as a JSON-able dict.

    The `contract.ExportMetadata` fields (`task`, `signatures`,
    `preprocessing`, `task_config`, `extra`, `version`) plus, for readers of
    earlier exports, the entries of `preprocessing`, `task_config` and
    `extra` repeated at the top level (e.g. `class_names`, `text_pair`,
    `sequence_length`, `pooling`, `dev_metrics`).
    """
    meta = contract.ExportMetadata(
        task=task.name,
        signatures={
            name: signature.as_dict() for name, signature in contract.signatures_for(task.name, task.text_pair).items()
        },
        preprocessing={
            "sequence_length": int(preprocessor.sequence_length),
            "lowercase": bool(preprocessor.lowercase),
            "vocabulary_size": int(preprocessor.vocabulary_size),
        },
        task_config=dict(task.metadata()),
        extra=dict(extra or {}),
    )
    fields = json.loads(meta.to_json())
    flat = {**meta.preprocessing, **meta.task_config, **meta.extra}
    return {**{k: v for k, v in flat.items() if k not in fields}, **fields}


def check_export_dir(export_dir, model_name=None):
    """Raises `ExportError` (naming --export_dir/--model_name) when the
    export cannot go to `<export_dir>/<model_name>/`."""
    export_dir = os.fspath(export_dir)
    path = export_dir
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if path and os.path.exists(path) and not os.path.isdir(path):
        raise ExportError(f"--export_dir: {path} is a file, not a folder")
    if model_name is not None:
        model_dir = os.path.join(export_dir, model_name)
        if os.path.exists(model_dir) and not os.path.isdir(model_dir):
            raise ExportError(f"--model_name: {model_dir} is a file, not a folder")


# Sentences for the warmup file (TF Serving's assets.extra/tf_serving_warmup_requests): short and long,
# cased, accented and empty, so the first real request finds every tokenizer path already warm.
WARMUP_TEXTS = (
    "The food was really good and the staff were friendly.",
    "I would not recommend this place to anyone.",
    "Zürich's café served crème brûlée at 9:30 on 3 March 2021!",
    "",
    "A longer sentence with many words, to exercise the full sequence length after WordPiece tokenization "
    "of uncommon words such as photosynthesis, antidisestablishmentarianism and electroencephalography.",
)
WARMUP_PAIRS = (
    "The staff were friendly.",
    "Everyone would recommend it.",
    "Dessert was served in the morning.",
    "",
    "The sentence is short.",
)
WARMUP_QUESTIONS = (  # question answering: asked of WARMUP_TEXTS as contexts
    "How was the food?",
    "Who would not recommend it?",
    "When was crème brûlée served?",
    "",
    "Which uncommon words are mentioned?",
)


def write_warmup_requests(path, task_name, text_pair=False):
    """Writes `<path>/assets.extra/tf_serving_warmup_requests`: Predict requests of raw sentences.

    Three `PredictionLog` records for `serving_default` with batches of 1, 2 and 5 sentences (`text`,
    plus `text_pair` for pair tasks; `question` and `context` for question answering) and one of 2
    sentences for each other signature of the task (e.g. `tokens`), which TF Serving and
    `kerasbert.serve` replay before serving the version.

    Example:

    >>> import tempfile
    >>> from kerasbert.serving.warmup import read_warmup_records
    >>> d = tempfile.mkdtemp()
    >>> logs = read_warmup_records(write_warmup_requests(d, "token_classification"))
    >>> [(log.predict_log.request.model_spec.signature_name, sorted(log.predict_log.request.inputs)) for log in logs]
    [('serving_default', ['text']), ('serving_default', ['text']), ('serving_default', ['text']), ('tokens', ['text'])]
    """
    from kerasbert.serving.warmup import predict_log, write_warmup_file

    def inputs_for(signature, n):
        texts = {
            contract.TEXT: list(WARMUP_TEXTS[:n]),
            contract.TEXT_PAIR: list(WARMUP_PAIRS[:n]),
            contract.QUESTION: list(WARMUP_QUESTIONS[:n]),
            contract.CONTEXT: list(WARMUP_TEXTS[:n]),
        }
        return {name: texts[name] for name in signature.inputs}

    logs = []
    for name, signature in contract.signatures_for(task_name, text_pair).items():
        if name == contract.METADATA_SIGNATURE:
            continue
        for n in (1, 2, len(WARMUP_TEXTS)) if name == contract.SERVING_DEFAULT else (2,):
            logs.append(predict_log(inputs_for(signature, n), name))
    return write_warmup_file(path, logs)


def _write_export(tmp, preprocessor, model, endpoints, task):
    extra = task.export_trackables() if hasattr(task, "export_trackables") else []
    save_serving_archive(tmp, [preprocessor, model, *extra], endpoints)
    write_warmup_requests(tmp, task.name, task.text_pair)  # in the temporary folder: renamed with the model


def export_task(task, preprocessor, model, export_dir, model_name, version=None, extra=None):
    """Exports `model` for `task` as `<export_dir>/<model_name>/<version>/`.

    Args:
        task: a `kerasbert.tasks.Task` (after `prepare`, e.g. with its class
            names).
        preprocessor: the `BertPreprocessor` the model was trained with.
        model: the task's model (`task.build_model(...)`).
        export_dir: the TF Serving base folder.
        model_name: the served model's name (its folder).
        version: an integer version (must not exist yet); default: one more
            than the newest present.
        extra: JSON-able facts for the metadata's `extra` (dev metrics, the
            training file, the encoder's size...).

    Returns:
        The version folder written.

    Raises:
        ExportError: `export_dir` or the model folder is a file.
        FileExistsError: `version` exists already.
        ValueError: the task's endpoints are not the contract's signatures.

    Example (not run as a doctest):

        path = export_task(task, preprocessor, model, "exports", "sst2")
        read_metadata(path)["task"]  # 'classification'
    """
    check_export_dir(export_dir, model_name)
    endpoints = dict(task.serving_endpoints(preprocessor, model))
    expected = set(contract.signatures_for(task.name, task.text_pair)) - {contract.METADATA_SIGNATURE}
    if set(endpoints) != expected:
        raise ValueError(f"task {task.name!r} serves {sorted(endpoints)}, the contract says {sorted(expected)}")
    metadata = export_metadata(task, preprocessor, extra)
    endpoints[contract.METADATA_SIGNATURE] = metadata_endpoint(json.dumps(metadata, ensure_ascii=False, sort_keys=True))
    try:
        return write_versioned(
            export_dir,
            model_name,
            lambda tmp: _write_export(tmp, preprocessor, model, endpoints, task),
            version=version,
            metadata=metadata,
        )
    except (NotADirectoryError, FileExistsError) as e:
        if isinstance(e, FileExistsError) and version is not None and str(e).startswith("version"):
            raise
        raise ExportError(f"--export_dir: cannot write {os.path.join(export_dir, model_name)}: {e}") from e
