"""Helpers for the UI tests (tests/test_ui.py) and the tests that drive ui/app.py elsewhere.

One real ``python -m kerasbert.serve`` (gRPC, REST and Prometheus metrics on free loopback ports) serves
every kind of model the app has a page for, built once per test process (:func:`ui_server`):

* "toy": the toy classifier of tests/test_client.py (P(positive) = vowel fraction of the text), with a
  kerasbert ``metadata`` signature (task classification) and a toy ``tokens`` signature (the words);
* "toy_score": the toy's ``regress`` signature as ``serving_default`` (task regression);
* "toy_embedder": the toy embedder of tests/test_client_embeddings.py (embedding = letter counts; its
  ``tokens`` signature returns the words);
* "toy_old": the toy classifier as it was, without ``metadata`` (an older or foreign export);
* "ner": a real tiny BERT tagger fine-tuned here in seconds on synthetic CoNLL sentences: the name after
  "Mr." is PER, a city of ``CITIES`` is LOC;
* "qa": the session's tiny QA model (conftest's ``tiny_qa``: "room and <person>" asks where the person
  went).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa

from conftest import REPO, run_finetune
from kerasbert import contract
from serving_utils import free_port, running_server
from test_client import CLASS_NAMES, MODEL_NAME, build_toy_model

APP = REPO / "ui" / "app.py"
sys.path.insert(0, str(APP.parent))  # the app's own modules (kbui), for the tests that read them directly
CLASSIFIER = MODEL_NAME  # "toy"
REGRESSION_MODEL = "toy_score"
EMBEDDING_MODEL = "toy_embedder"
OLD_MODEL = "toy_old"
NER_MODEL = "ner"
QA_MODEL = "qa"
MONITORING_CONFIG = REPO / "serving" / "monitoring.config"


# --- toy exports that say their task ----------------------------------------------------------------


def with_export_metadata(
    src: Path, dst: Path, task: str, signatures: dict[str, str] | None = None, word_tokens: bool = False, **task_config
):
    """Re-saves the SavedModel version folder ``src`` as ``dst`` plus a kerasbert ``metadata`` signature.

    ``signatures`` maps the new signature names to ``src``'s (default: all of them, as they are);
    ``word_tokens`` adds a ``tokens`` signature returning the words of ``text`` (``""`` padding), as an
    export's WordPiece signature would; ``task_config`` goes into the metadata (e.g. ``class_names``).
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(src))
    chosen = {name: loaded.signatures[old] for name, old in (signatures or {n: n for n in loaded.signatures}).items()}
    meta = contract.ExportMetadata(
        task=task,
        signatures={name: sig.as_dict() for name, sig in contract.signatures_for(task).items()},
        task_config=task_config,
    ).to_json()
    module = tf.Module()
    module.inner = loaded
    module.metadata = tf.function(lambda: {contract.METADATA: tf.constant(meta)}, input_signature=[])
    chosen[contract.METADATA_SIGNATURE] = module.metadata
    if word_tokens:
        spec = [tf.TensorSpec([None], tf.string, name=contract.TEXT)]
        module.tokens = tf.function(
            lambda text: {contract.TOKENS: tf.strings.split(text).to_tensor(default_value="")}, input_signature=spec
        )
        chosen[contract.TOKENS_SIGNATURE] = module.tokens
    tf.saved_model.save(module, str(dst), signatures=chosen)
    return dst


def write_toy_classifier(root: Path, name: str = CLASSIFIER, raw: Path | None = None) -> Path:
    """The toy classifier with its ``metadata`` (task classification) as ``root/name/1``; returns ``root/name``.

    ``raw``: the toy's version folder if already built (else it is built under ``root``).
    """
    raw = raw or build_toy_model(root / f"{name}_raw")
    with_export_metadata(raw, root / name / "1", contract.CLASSIFICATION, word_tokens=True, class_names=CLASS_NAMES)
    return root / name


def model_config(path: Path, models: dict[str, Path]) -> Path:
    """A TF Serving ``--model_config_file`` serving ``{name: base path}``."""
    entries = [f'  config {{ name: "{n}" base_path: "{b}" model_platform: "tensorflow" }}' for n, b in models.items()]
    path.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    return path


# --- a real tiny tagger ------------------------------------------------------------------------------

NAMES = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas"]
CITIES = ["London", "Berlin", "Paris", "Madrid", "Rome", "Vienna", "Lisbon", "Prague"]
FILLER = ["the", "a", "meeting", "was", "today", "and", "then", "met", "visited", "left", "for", "with"]
FILLER += ["friends", "in", "from", "arrived", "flew", "to", "said", "that", "."]
UNKNOWN = ["on", "Monday", "meet", "happy", "business", "trip", "we", "our", ",", "!"]  # not in the vocab


def conll_sentence(rng: random.Random) -> list[tuple[str, str]]:
    words = []
    for _ in range(rng.randint(2, 6)):
        r = rng.random()
        if r < 0.3:
            words += [("Mr.", "O"), (rng.choice(NAMES), "B-PER")]
        elif r < 0.55:
            words.append((rng.choice(CITIES), "B-LOC"))
        else:
            words += [(w, "O") for w in rng.sample(FILLER + UNKNOWN, rng.randint(1, 3))]
    return words


def write_conll(path: Path, n: int, seed: int) -> Path:
    """``n`` sentences in CoNLL-2003's layout: -DOCSTART-, 4 columns, a blank line after each sentence."""
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(n):
        lines += [f"{word} NNP I-NP {tag}" for word, tag in conll_sentence(rng)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_vocab(path: Path) -> Path:
    words = sorted({w.lower() for w in NAMES + CITIES + FILLER} | {"mr"})
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n", encoding="utf-8")
    return path


def train_tiny_ner(root: Path) -> Path:
    """Fine-tunes the tiny tagger (a few seconds) and returns its TF Serving base path."""
    root.mkdir(parents=True, exist_ok=True)
    run_finetune(
        [
            "--task", "token_classification",
            "--train_file", write_conll(root / "train.txt", 600, seed=1),
            "--dev_file", write_conll(root / "dev.txt", 100, seed=2),
            "--vocab", write_vocab(root / "vocab.txt"),
            "--model_size", "tiny", "--sequence_length", 32, "--epochs", 2, "--batch_size", 32,
            "--learning_rate", 2e-3, "--dropout", 0.0, "--seed", 0,
            "--output_dir", root / "run", "--export_dir", root / "exports", "--model_name", NER_MODEL, "--quiet",
        ]
    )  # fmt: skip
    return root / "exports" / NER_MODEL


# --- the one server ----------------------------------------------------------------------------------

_SHARED: dict = {}


def ui_server(request, tmp_path_factory):
    """The server of every UI model (module docstring), started once per test process; ``.config`` is its
    model config file. Stopped when the session ends."""
    if "server" not in _SHARED:
        from test_client_embeddings import build_toy_embedder

        tiny_qa = request.getfixturevalue("tiny_qa")
        root = tmp_path_factory.mktemp("ui_models")
        raw = build_toy_model(root / "raw_toy")
        raw_embedder = build_toy_embedder(root / "raw_embedder")
        models = {
            CLASSIFIER: write_toy_classifier(root, raw=raw),
            REGRESSION_MODEL: root / REGRESSION_MODEL,
            EMBEDDING_MODEL: root / EMBEDDING_MODEL,
            OLD_MODEL: raw.parent,
            NER_MODEL: train_tiny_ner(root / "ner"),
            QA_MODEL: Path(tiny_qa.base),
        }
        with_export_metadata(raw, root / REGRESSION_MODEL / "1", contract.REGRESSION, {"serving_default": "regress"})
        with_export_metadata(raw_embedder, root / EMBEDDING_MODEL / "1", contract.EMBEDDING, pooling="letters")
        config = model_config(root / "models.config", models)
        stack = contextlib.ExitStack()
        server = stack.enter_context(
            running_server(
                model_config_file=config,
                rest_api=True,
                # no warmup replay: the tests need answers, not a warmed first request
                extra_args=["--monitoring_config_file", str(MONITORING_CONFIG), "--enable_model_warmup=false"],
                timeout=300,  # six models load one after the other: slow on a loaded machine
            )
        )
        server.config = config
        _SHARED["server"] = server
        request.config.add_cleanup(stack.close)
    return _SHARED["server"]


def app_env(monkeypatch, server, model: str, address: str | None = None) -> None:
    """Points the app (its environment defaults) at ``server``'s gRPC, REST and model config, and ``model``."""
    monkeypatch.setenv("KERASBERT_SERVER", address or server.address)
    monkeypatch.setenv("KERASBERT_MODEL", model)
    monkeypatch.setenv("KERASBERT_REST", f"127.0.0.1:{server.rest_port}")
    monkeypatch.setenv("KERASBERT_MODEL_CONFIG", str(server.config))


def chart_data(chart) -> pa.Table:
    """The data of an AppTest ``vega_lite_chart`` element (its first dataset), as a pandas DataFrame."""
    [dataset, *_] = chart.proto.datasets
    return pa.ipc.open_stream(dataset.data.data).read_pandas()


# --- streamlit run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def running_streamlit(server, model: str):
    """``streamlit run ui/app.py`` on a free loopback port, pointed at ``model`` on ``server`` (gRPC, REST and
    model config). Yields the app's URL once Streamlit's health check answers; stopped at exit."""
    port = free_port()
    env = dict(
        os.environ,
        KERASBERT_SERVER=server.address,
        KERASBERT_MODEL=model,
        KERASBERT_REST=f"127.0.0.1:{server.rest_port}",
        KERASBERT_MODEL_CONFIG=str(server.config),
    )
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true"]
    process = subprocess.Popen(
        [*command, "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                urllib.request.urlopen(url + "_stcore/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "streamlit did not start within 60 s"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
