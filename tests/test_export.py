"""Exports: raw strings in, labels out; loadable with only TF + TF-Text;
TF Serving's versioned layout written atomically."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from kerasbert.export import layout

TEXTS = ["the food was really good", "the staff was awful and rude", "", "Ünïcödé wonderful !!", "x " * 300]

# The only non-core ops an export may contain: tf-text ops that the stock
# tensorflow/serving images link in (see serving/README.md).
ALLOWED_TF_TEXT_OPS = {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets", "NormalizeUTF8"}

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tf-text ops; nothing else is imported
    model = tf.saved_model.load(sys.argv[1])
    fn = model.signatures["serving_default"]
    out = fn(text=tf.constant(json.loads(sys.argv[2])))
    # (`import tensorflow` itself imports keras in TF 2.21; our code and
    # keras-hub must not be needed.)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("keras_hub", "keras_nlp", "kerasbert"))
    print(json.dumps({
        "leaked_modules": leaked,
        "inputs": sorted(fn.structured_input_signature[1]),
        "outputs": {k: (v.numpy().astype(str).tolist() if v.dtype == tf.string else v.numpy().tolist())
                    for k, v in out.items()},
    }))
    """
)


def test_export_reloads_in_a_fresh_process_with_identical_outputs(trained_export):
    results = trained_export["results"]
    model, pre, task = results.model, results.preprocessor, results.task
    expected = tf.nn.softmax(model(pre(tf.constant(TEXTS)), training=False)).numpy()

    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, trained_export["export"], json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["leaked_modules"] == []
    assert got["inputs"] == ["text"]
    out = got["outputs"]
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    assert out["label_ids"] == expected.argmax(-1).tolist()
    assert out["labels"] == [task.class_names[i] for i in expected.argmax(-1)]
    assert out["class_names"] == [task.class_names] * len(TEXTS)
    # And it is right about the words it learned.
    assert out["labels"][:2] == ["positive", "negative"]


def _graph_ops(version_dir):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


def test_graph_has_only_tf_core_and_servable_tf_text_ops(trained_export):
    ops = _graph_ops(trained_export["export"])
    non_core = ops - set(dir(tf.raw_ops))
    print("non-core ops:", sorted(non_core))
    assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & ops
    assert non_core <= ALLOWED_TF_TEXT_OPS


def test_metadata_and_layout(trained_export):
    export = trained_export["export"]
    assert os.path.basename(export) == "1"
    meta = layout.read_metadata(export)
    assert meta["class_names"] == ["negative", "positive"] and meta["task"] == "classification"
    assert meta["dev_metrics"]["accuracy"] >= 0.9


def test_versions_are_written_atomically_and_numbered(tmp_path):
    def write(path):
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("x")

    assert layout.write_versioned(tmp_path, "m", write).endswith(os.path.join("m", "1"))
    assert layout.write_versioned(tmp_path, "m", write).endswith(os.path.join("m", "2"))
    assert layout.write_versioned(tmp_path, "m", write, version=7).endswith("7")
    with pytest.raises(FileExistsError):
        layout.write_versioned(tmp_path, "m", write, version=7)

    def crash(path):
        write(path)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        layout.write_versioned(tmp_path, "m", crash)
    # A failed export leaves nothing behind, not even its temporary folder.
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2", "7"]
    assert layout.versions(tmp_path / "m") == [1, 2, 7]
