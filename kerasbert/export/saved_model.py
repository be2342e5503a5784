"""Raw-string SavedModels for TF Serving.

Every export takes text and returns what a person wants. The graph contains
the preprocessing layer (tf-text ops) and the Keras model (TF core ops) and
nothing else – no `py_function` – so stock TF Serving (with the tf-text ops)
and a process that imports only `tensorflow` + `tensorflow_text` can load it.
Built on Keras 3's `ExportArchive`, which tracks the Keras variables.
"""

import keras
import tensorflow as tf

from kerasbert.export.layout import write_versioned


def _text_spec(name):
    return tf.TensorSpec([None], tf.string, name=name)


def classifier_serving_fn(preprocessor, model, task):
    """The `serving_default` function of a fine-tuned classifier/regressor.

    Inputs: `text` (and `text_pair` for pair tasks), tf.string `[batch]`.
    Outputs (classification): `probabilities` float32 `[batch, classes]`,
    `label_ids` int64 `[batch]`, `labels` string `[batch]`, and
    `class_names` string `[batch, classes]` (the class names for each row, so
    clients can label the probabilities without other metadata).
    Outputs (regression): `score` float32 `[batch]`.

    Returns:
        `(fn, input_signature)`.
    """
    class_names = tf.constant(task.class_names or [""], dtype=tf.string)

    def outputs(features):
        y = model(features, training=False)
        if task.kind == "regression":
            return {"score": tf.cast(y, tf.float32)}
        probabilities = tf.nn.softmax(tf.cast(y, tf.float32), axis=-1)
        label_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        batch = tf.shape(probabilities)[0]
        return {
            "probabilities": probabilities,
            "label_ids": label_ids,
            "labels": tf.gather(class_names, label_ids),
            "class_names": tf.tile(class_names[tf.newaxis, :], [batch, 1]),
        }

    if task.text_pair:

        def serve(text, text_pair):
            return outputs(preprocessor((text, text_pair)))

        return serve, [_text_spec("text"), _text_spec("text_pair")]

    def serve(text):
        return outputs(preprocessor(text))

    return serve, [_text_spec("text")]


def save_serving_archive(path, tracked, endpoints):
    """Writes a SavedModel with the given signatures.

    Args:
        path: output folder.
        tracked: Keras layers/models whose variables the graph uses.
        endpoints: `{signature_name: (fn, input_signature)}`; the first is
            also `serving_default` unless one is named so.
    """
    archive = keras.export.ExportArchive()
    for obj in tracked:
        archive.track(obj)
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name, fn, signature)
    archive.write_out(path, verbose=False)


def export_classifier(
    preprocessor, model, task, export_dir, model_name, version=None, metadata=None
):
    """Exports a fine-tuned model as `<export_dir>/<model_name>/<version>/`.

    Example:

    >>> path = export_classifier(pre, model, TaskSpec("classification",
    ...                          ["negative", "positive"]), "exports", "sentiment")
    ... # doctest: +SKIP

    Returns:
        The version folder written.
    """
    fn, signature = classifier_serving_fn(preprocessor, model, task)
    meta = {
        "task": task.kind,
        "class_names": list(task.class_names),
        "text_pair": task.text_pair,
        "sequence_length": preprocessor.sequence_length,
        "lowercase": preprocessor.lowercase,
        "vocabulary_size": preprocessor.vocabulary_size,
    }
    meta.update(metadata or {})
    return write_versioned(
        export_dir,
        model_name,
        lambda tmp: save_serving_archive(
            tmp, [preprocessor, model], {"serving_default": (fn, signature)}
        ),
        version=version,
        metadata=meta,
    )
