"""What every page shares: sidebar settings, what the server says, the page registry and the messages.

A run of the app (``ui/app.py``) reads the sidebar (:func:`sidebar`), asks the server about the chosen
model and about the other models it serves (:func:`connect`), and stores the result as a
:class:`PageContext` in the session, where the page script ``st.navigation`` runs picks it up
(:func:`page_context`). The pages come from :data:`PAGES`, one per task of :mod:`kerasbert.contract`
plus the Server page; the app opens the page of the model's own task (its ``metadata`` signature,
through :meth:`kerasbert.client.Client.export_metadata`), and a page of another task says which model
to pick, offering the served models that fit.

Messages are said once, each with the command that fixes it: no server at the address (with the
``--port`` of the address), a model the server does not serve, a model of another task, a model
that does not say its task.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from kerasbert import client as kb
from kerasbert import contract
from kerasbert.client.transport import split_target

SERVER_KEY, MODEL_KEY = "server", "model"
CONTEXT_KEY = "_kb_context"
METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's default prometheus_config.path
MODEL_CONFIG_ENV = "KERASBERT_MODEL_CONFIG"  # a --model_config_file: the models the server serves
REST_ENV = "KERASBERT_REST"  # host:port of the REST API (Prometheus metrics)


@dataclass
class Settings:
    """What the sidebar asks for."""

    server: str
    model: str
    signature: str = contract.SERVING_DEFAULT
    timeout: float = 10.0
    rest: str = ""  # host:port of the server's REST API ("" = none)
    model_config: str = ""  # the server's --model_config_file ("" = none)

    @property
    def port(self) -> str:
        return split_target(self.server)[1] or "8500"


@dataclass
class ModelInfo:
    """What the server says about the chosen model: versions, signature metadata, or why it can't say."""

    versions: list[tuple[int, str]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None  # GetModelMetadata: the chosen signature and all signatures
    export: contract.ExportMetadata | None = None  # what the model says it does (its task)
    no_export: kb.KerasBertClientError | None = None  # why the model does not say (no metadata)
    error: kb.KerasBertClientError | None = None  # server down / model missing: nothing works
    notes: list[str] = field(default_factory=list)  # partial failures (e.g. no ModelService)

    @property
    def task(self) -> str | None:
        """The model's task (a name in ``contract.TASKS``), or ``None`` when it does not say."""
        return self.export.task if self.export is not None else None

    @property
    def inputs(self) -> dict[str, Any]:
        return (self.metadata or {}).get("inputs", {})

    @property
    def outputs(self) -> dict[str, Any]:
        return (self.metadata or {}).get("outputs", {})

    @property
    def signatures(self) -> dict[str, Any]:
        return (self.metadata or {}).get("signatures", {})


@dataclass
class ServedModel:
    """One model the server serves (or was told to): its versions and states and its task."""

    name: str
    base_path: str | None = None  # from the model config file
    versions: list[tuple[int, str]] = field(default_factory=list)
    task: str | None = None
    problem: str | None = None  # "not served", "no metadata", ...

    @property
    def states(self) -> str:
        return ", ".join(f"v{v} {s}" for v, s in self.versions) or "-"


@dataclass
class PageContext:
    """What a page gets: the open client, the settings, the chosen model and the served ones."""

    client: kb.Client
    settings: Settings
    info: ModelInfo
    served: list[ServedModel] = field(default_factory=list)
    metrics: str | None = None  # the Prometheus text, when the REST port serves it
    metrics_error: str | None = None


# --- the page registry --------------------------------------------------------------------------

TRAIN_HINT = (
    "python -m kerasbert.train --train_file <train.tsv> --dev_file <dev.tsv> --text_column <column> "
    "--label_column <column> --model_name <name>"
)
EMBEDDING_HINT = (
    "python -m kerasbert.export --init_checkpoint <checkpoint folder> --mode embedding "
    "--pooling mean --l2_normalize --export_dir exports --model_name <name>"
)
NER_TRAIN_HINT = (
    "python -m kerasbert.train --task token_classification --train_file <eng.train> --dev_file <eng.testa> "
    "--model_name <name>"
)
QA_TRAIN_HINT = (
    "python -m kerasbert.train --task question_answering --train_file <squad.json> --dev_file <squad.json> "
    "--train_articles 0-29 --dev_articles 30-37 --model_name <name>"
)
REEXPORT_HINT = "python -m kerasbert.export --run_dir runs/{model}"

# What each task is called in messages ("Model 'x' is a classification model").
TASK_KINDS = {
    contract.CLASSIFICATION: "a classification",
    contract.REGRESSION: "a regression",
    contract.EMBEDDING: "an embedding",
    contract.TOKEN_CLASSIFICATION: "a token-classification (NER)",
    contract.QUESTION_ANSWERING: "a question-answering",
}


@dataclass(frozen=True)
class PageSpec:
    """A page: its script (relative to ui/), URL path, the tasks it serves, which model it needs, how to make one."""

    title: str
    url_path: str
    script: str
    icon: str
    tasks: tuple[str, ...] = ()
    needs: str = ""
    how: str = ""


PAGES = (
    PageSpec(
        "Classify", "classify", "views/classify.py", ":material/label:",
        (contract.CLASSIFICATION, contract.REGRESSION), "a classification or regression model", TRAIN_HINT,
    ),
    PageSpec(
        "NER", "ner", "views/ner.py", ":material/format_color_text:",
        (contract.TOKEN_CLASSIFICATION,), "a token-classification (NER) model", NER_TRAIN_HINT,
    ),
    PageSpec(
        "Question answering", "qa", "views/qa.py", ":material/help:",
        (contract.QUESTION_ANSWERING,), "a question-answering model", QA_TRAIN_HINT,
    ),
    PageSpec(
        "Embeddings", "embeddings", "views/embeddings.py", ":material/scatter_plot:",
        (contract.EMBEDDING,), "an embedding model", EMBEDDING_HINT,
    ),
    PageSpec("Server", "server", "views/server.py", ":material/dns:"),
)  # fmt: skip
# Every task of the contract has its page.
assert {t for p in PAGES for t in p.tasks} == set(contract.TASKS), "a task without a page"


def page_for_task(task: str | None) -> PageSpec | None:
    """The page of ``task``, or ``None``."""
    return next((p for p in PAGES if task in p.tasks), None)


def spec(url_path: str) -> PageSpec:
    return next(p for p in PAGES if p.url_path == url_path)


# --- the sidebar and the server's answers ---------------------------------------------------------


def default_rest(server: str) -> str:
    """``$KERASBERT_REST``, else TF Serving's convention: the REST API one port above gRPC (8500 -> 8501)."""
    import os

    if os.environ.get(REST_ENV) is not None:
        return os.environ[REST_ENV]
    host, port = split_target(server)
    return f"{host or 'localhost'}:{int(port) + 1}" if port and port.isdigit() else ""


def _kept_text_input(label: str, key: str, default: str) -> str:
    """A sidebar text field whose value is kept under ``key`` in the session (the field itself is ``key_field``).

    The app opens another page with ``st.switch_page`` when the model changes, and a run that switches
    pages drops its widgets' new values; a value copied by the field's callback survives it.
    """
    field_key = f"{key}_field"
    st.session_state.setdefault(key, default)
    st.session_state.setdefault(field_key, st.session_state[key])

    def keep() -> None:
        st.session_state[key] = st.session_state[field_key]

    st.sidebar.text_input(label, key=field_key, on_change=keep)
    return str(st.session_state[key]).strip()


def sidebar() -> Settings:
    """Server address, model name and (in "Advanced") signature, timeout, REST address and model config."""
    import os

    st.sidebar.header("Server")
    server = _kept_text_input("Server (host:port)", SERVER_KEY, kb.default_server())
    model = _kept_text_input("Model name", MODEL_KEY, kb.default_model())
    with st.sidebar.expander("Advanced"):
        signature = st.text_input("Signature", value=contract.SERVING_DEFAULT, key="signature").strip()
        timeout = st.number_input("Timeout (s)", min_value=0.5, max_value=600.0, value=10.0, step=0.5, key="timeout")
        rest = st.text_input(
            "REST API (host:port), for metrics", value=default_rest(server), key="rest", help="--rest_api_port"
        ).strip()
        model_config = st.text_input(
            "Model config file", value=os.environ.get(MODEL_CONFIG_ENV, ""), key="model_config",
            help="the server's --model_config_file: the Server page lists its models",
        ).strip()  # fmt: skip
    return Settings(server, model, signature or contract.SERVING_DEFAULT, float(timeout), rest, model_config)


def inspect_model(client: kb.Client) -> ModelInfo:
    """Asks the server for the model's versions and signature metadata, never raising."""
    info = ModelInfo()
    try:
        info.versions = client.status()
    except (kb.ServerUnavailable, kb.ModelNotFound, kb.RequestTimeout) as err:
        info.error = err
        return info
    except kb.KerasBertClientError as err:  # e.g. a server without ModelService
        info.notes.append(f"Model status unavailable: {err}")
    try:
        info.export = client.export_metadata()
    except (kb.ServerUnavailable, kb.ModelNotFound, kb.RequestTimeout) as err:
        info.error = err
        return info
    except kb.KerasBertClientError as err:  # NoExportMetadata, or a failing metadata signature
        info.no_export = err
    try:
        info.metadata = client.metadata()
    except (kb.ServerUnavailable, kb.ModelNotFound, kb.RequestTimeout) as err:
        info.error = err
    except kb.KerasBertClientError as err:
        info.notes.append(f"Model metadata unavailable: {err}")
    if info.metadata is not None and not info.inputs:
        info.notes.append(f"The model has no signature '{client.signature_name}'.")
    return info


_CONFIG_ENTRY = re.compile(r"\bconfig\s*\{")
_FIELD = r'\b{}\s*:\s*"((?:[^"\\]|\\.)*)"'


def config_models(path: str) -> list[tuple[str, str | None]]:
    """``[(name, base_path), ...]`` of a TF Serving ``--model_config_file`` (text ``ModelServerConfig``).

    Read with a small parser (comments dropped, each ``config { ... }`` entry's ``name`` and
    ``base_path``), so the app does not import TensorFlow for the proto. An unreadable file gives ``[]``.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".config", delete=False) as f:
    ...     _ = f.write('model_config_list {\\n config { name: "a" base_path: "/m/a" }  # x\\n'
    ...                 ' config { name: "b" base_path: "/m/b" version_labels { key: "s" value: 1 } }\\n}')
    >>> config_models(f.name)
    [('a', '/m/a'), ('b', '/m/b')]
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    text = "\n".join(re.sub(r'#[^"\n]*$', "", line) for line in text.splitlines())
    models = []
    for entry in _CONFIG_ENTRY.split(text)[1:]:
        name = re.search(_FIELD.format("name"), entry)
        base = re.search(_FIELD.format("base_path"), entry)
        if name:
            models.append((name.group(1), base.group(1) if base else None))
    return models


def fetch_metrics(rest: str, timeout: float = 2.0) -> tuple[str | None, str | None]:
    """``(Prometheus text, None)`` from ``http://<rest>/monitoring/prometheus/metrics``, or ``(None, why not)``."""
    if not rest:
        return None, "no REST address is set (sidebar, Advanced)"
    url = f"http://{rest}{METRICS_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.read().decode("utf-8", errors="replace"), None
    except urllib.error.HTTPError as err:
        return None, f"{url} answered HTTP {err.code}"
    except (OSError, ValueError) as err:
        return None, f"nothing answers at {url} ({getattr(err, 'reason', err)})"


ANSWER_SECONDS = 10.0  # how long an answer about another model is kept
_answers: dict[tuple[str, str], tuple[float, tuple[list, str | None, str | None]]] = {}
_answers_lock = threading.Lock()


def ask_model(server: str, name: str, timeout: float) -> tuple[list, str | None, str | None]:
    """``(versions, task, problem)`` of another model, over gRPC; kept ``ANSWER_SECONDS`` in this process (every
    session and run), so that the app's own questions neither slow each run nor swamp the request counts."""
    now = time.monotonic()
    with _answers_lock:
        kept = _answers.get((server, name))
    if kept is not None and now - kept[0] < ANSWER_SECONDS:
        return kept[1]
    versions, task, problem = [], None, None
    with kb.Client(target=server, model_name=name, timeout=timeout) as other:
        try:
            versions = other.status()
            task = other.task
            if task is None:
                problem = "does not say its task"
        except kb.ModelNotFound:
            problem = "not served"
        except kb.KerasBertClientError as err:
            problem = err.code or "no answer"
    with _answers_lock:
        _answers[(server, name)] = (now, (versions, task, problem))
    return versions, task, problem


def served_models(ctx: PageContext) -> list[ServedModel]:
    """The models of the model config file, those the metrics name, and the chosen one, each with its state.

    TF Serving has no call that lists its models, so the list comes from the server's model config
    (sidebar, Advanced, or ``$KERASBERT_MODEL_CONFIG``) and from the ``model_name`` labels of its
    Prometheus metrics; each is then asked for its status and task over gRPC.
    """
    from kbui.server_page import metric_model_names  # the Prometheus parser lives with the Server page

    settings, info = ctx.settings, ctx.info
    names: dict[str, str | None] = dict(config_models(settings.model_config)) if settings.model_config else {}
    for name in metric_model_names(ctx.metrics or ""):
        names.setdefault(name, None)
    names.setdefault(settings.model, None)
    served = []
    for name, base in names.items():
        if name == settings.model:
            problem = None
            if info.error is not None:
                problem = "not served" if isinstance(info.error, kb.ModelNotFound) else "no answer"
            elif info.no_export is not None:
                problem = "does not say its task"
            served.append(ServedModel(name, base, info.versions, info.task, problem))
        else:
            versions, task, problem = ask_model(settings.server, name, min(settings.timeout, 5.0))
            served.append(ServedModel(name, base, [tuple(v) for v in versions], task, problem))
    return served


def connect(settings: Settings, client: kb.Client) -> PageContext:
    """Everything the pages need from the server, asked once per run."""
    ctx = PageContext(client, settings, inspect_model(client))
    down = isinstance(ctx.info.error, (kb.ServerUnavailable, kb.RequestTimeout))
    if not down:
        ctx.metrics, ctx.metrics_error = fetch_metrics(settings.rest)
        ctx.served = served_models(ctx)
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


def page_context() -> PageContext:
    """The context ``ui/app.py`` stored for this run (the page scripts run inside it)."""
    return st.session_state[CONTEXT_KEY]


def show_status(ctx: PageContext) -> None:
    """The sidebar status line, when the model answers (failures are said once, on the page)."""
    if ctx.info.error is not None:
        return
    if ctx.info.versions:
        versions = ", ".join(f"v{v} {state}" for v, state in ctx.info.versions)
        kind = f" ({ctx.info.task})" if ctx.info.task else ""
        st.sidebar.success(f"Model '{ctx.settings.model}'{kind}: {versions}")
    for note in ctx.info.notes:
        st.sidebar.warning(note)


# --- messages --------------------------------------------------------------------------------------


def serve_command(settings: Settings, model: str | None = None) -> str:
    """The command that serves ``model`` at the sidebar's port."""
    model = model or settings.model
    return f"python -m kerasbert.serve --port {settings.port} --model_name {model} --model_base_path exports/{model}"


def pick_model(name: str) -> None:
    """Button callback: use another model (the sidebar's model field follows)."""
    st.session_state[MODEL_KEY] = st.session_state[f"{MODEL_KEY}_field"] = name


def offer_models(models: list[ServedModel], key: str) -> None:
    """A button per model; clicking one switches the app to it (and to its page)."""
    for row in range(0, len(models), 4):  # rows of up to four buttons, in the models' order
        for column, model in zip(st.columns(4), models[row : row + 4]):
            label = f"Use '{model.name}'" + (f" ({model.task})" if model.task else "")
            column.button(label, key=f"use_{key}_{model.name}", on_click=pick_model, args=(model.name,))


def show_connection_error(ctx: PageContext) -> None:
    """One message for a server that is down or slow, or a model it does not serve, with the fix."""
    settings, error = ctx.settings, ctx.info.error
    if isinstance(error, kb.ModelNotFound):
        st.error(f"Model '{settings.model}' is not served at {settings.server}.")
        others = [m for m in ctx.served if m.name != settings.model and m.problem is None]
        if others:
            st.markdown("The server serves:")
            offer_models(others, "missing")
        st.caption("Serve it (or fix the model name in the sidebar):")
        st.code(serve_command(settings), language="sh")
    elif isinstance(error, kb.RequestTimeout):
        st.error(f"The server at {settings.server} did not answer within {settings.timeout:g} s.")
        st.caption("Raise the timeout (sidebar, Advanced), or check that this is the server's gRPC port.")
    else:
        st.error(f"No server answers at {settings.server}.")
        st.caption("Start one on that port (or fix the address in the sidebar):")
        st.code(serve_command(settings), language="sh")


def show_no_export_metadata(ctx: PageContext) -> None:
    """One message for a model that does not say its task: what is missing and how to re-export."""
    settings, error = ctx.settings, ctx.info.no_export
    if isinstance(error, kb.NoExportMetadata):
        missing = f"it has no kerasbert `{contract.METADATA_SIGNATURE}` signature"
    else:
        missing = f"its `{contract.METADATA_SIGNATURE}` signature failed"
    st.warning(
        f"Model '{settings.model}' does not say which task it performs ({missing}: an export from an older "
        "kerasbert, or not a kerasbert export), so this page cannot tell whether to classify, embed, find "
        "entities or answer questions with it. Re-export it with this kerasbert, whose exports name their "
        "task; a fine-tuned run needs no retraining:"
    )
    st.code(REEXPORT_HINT.format(model=settings.model), language="sh")
    st.caption(f"`runs/{settings.model}` is the training's `--output_dir` (default `runs/<model name>`).")


def show_wrong_model(ctx: PageContext, page: PageSpec) -> None:
    """What a page says for a model of another task: which kind to pick (the served ones that fit), or how to
    make one."""
    kind = TASK_KINDS.get(ctx.info.task, f"a '{ctx.info.task}'")
    fitting = [m for m in ctx.served if m.task in page.tasks and m.problem is None]
    where = "pick one below or in the sidebar" if fitting else "pick one in the sidebar"
    st.info(f"Model '{ctx.settings.model}' is {kind} model. This page needs {page.needs}: {where}, or make one:")
    if fitting:
        offer_models(fitting, page.url_path)
    st.code(page.how, language="sh")


def header(page: PageSpec) -> None:
    st.title(page.title)


def task_page_ready(url_path: str) -> PageContext | None:
    """The title of the page at ``url_path``, then the context when the model is of the page's task; else the one
    message (server down, model not served, no metadata, another task) and None."""
    page, ctx = spec(url_path), page_context()
    header(page)
    if ctx.info.error is not None:
        show_connection_error(ctx)
        return None
    if ctx.info.export is None:
        show_no_export_metadata(ctx)
        return None
    if ctx.info.task not in page.tasks:
        show_wrong_model(ctx, page)
        return None
    return ctx


def call(action: Any) -> Any:
    """Runs a server call; a failure shows as one error message (and returns None) instead of a traceback."""
    try:
        return action()
    except (kb.KerasBertClientError, ValueError, TypeError) as err:
        st.error(str(err))
        return None
