"""The :class:`Client`: per-task methods (classify, regress, encode...) over :class:`Transport`."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from kerasbert import contract
from kerasbert.client import decoders
from kerasbert.client.errors import (
    InvalidInput,
    KerasBertClientError,
    NoExportMetadata,
    NotAString,
    SignatureNotFound,
    WrongTask,
)
from kerasbert.client.transport import Transport

# What to call for each task (the hint of a WrongTask error).
TASK_METHODS = {
    contract.CLASSIFICATION: "classify()",
    contract.REGRESSION: "regress()",
    contract.EMBEDDING: "encode(), similarity(), search() or encode_tokens()",
    contract.TOKEN_CLASSIFICATION: "entities() or tokens()",
    contract.QUESTION_ANSWERING: "answer()",
}

# --------------------------------------------------------------------------------------
# Inputs and embedding maths (numpy only)
# --------------------------------------------------------------------------------------


# An output that only one task's serving_default has -> that task (QA's outputs include `score`, so it
# comes before regression). Used when a model without export metadata lacks the outputs a method needs.
TELLING_OUTPUTS = (
    (contract.ANSWER, contract.QUESTION_ANSWERING),
    (contract.ENTITY_LABELS, contract.TOKEN_CLASSIFICATION),
    (contract.EMBEDDINGS, contract.EMBEDDING),
    (contract.PROBABILITIES, contract.CLASSIFICATION),
    (contract.SCORE, contract.REGRESSION),
)


def _hint_from_outputs(available: Iterable[str], hint: str) -> str:
    """``use <method>`` for the task the outputs look like, else ``hint``.

    >>> _hint_from_outputs(["score"], "use classify() or predict()")
    'its outputs look like a regression export: use regress(); otherwise use classify() or predict()'
    >>> _hint_from_outputs(["x"], "use regress() or predict()")
    'use regress() or predict()'
    """
    names = set(available)
    for output, task in TELLING_OUTPUTS:
        if output in names:
            return f"its outputs look like {_a(task)} export: use {TASK_METHODS[task]}; otherwise {hint}"
    return hint


def _text_list(texts: str | bytes | Iterable[str], what: str) -> list[Any]:
    """One string or an iterable of strings as a non-empty list; NotAString (an InvalidInput and a TypeError)
    naming the index of a non-string, before anything is sent."""
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    elif isinstance(texts, np.ndarray):
        texts = texts.reshape(-1).tolist()
    elif not isinstance(texts, Iterable):
        message = f"{what} must be a string or a list of strings, got {type(texts).__name__} {texts!r}"
        raise NotAString(message, None, message)
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what} is empty: pass at least one string")
    for i, text in enumerate(texts):
        if not isinstance(text, (str, bytes)):
            message = f"{what}[{i}] is {text!r} ({type(text).__name__}), not a string"
            raise NotAString(message, None, message)
    return texts


def _a(word: str) -> str:
    """``"an embedding"``, ``"a classification"``."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _as_str(text: str | bytes, index: int, what: str = "texts") -> str:
    """Offsets count code points of a str, so bytes are decoded (UTF-8) first."""
    if isinstance(text, str):
        return text
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what}[{index}] is bytes but not UTF-8 ({err}); pass str") from None


def _questions_and_contexts(questions: Any, contexts: Any) -> tuple[list[str], list[str], bool]:
    """``(questions, contexts, single)`` of equal length; a lone string on one side is paired with
    every string of the other; ``single`` = both sides were one string."""
    single_q, single_c = isinstance(questions, (str, bytes)), isinstance(contexts, (str, bytes))
    questions = [_as_str(q, i, "questions") for i, q in enumerate(_text_list(questions, "questions"))]
    contexts = [_as_str(c, i, "contexts") for i, c in enumerate(_text_list(contexts, "contexts"))]
    if single_q and not single_c:
        questions = questions * len(contexts)
    elif single_c and not single_q:
        contexts = contexts * len(questions)
    elif len(questions) != len(contexts):
        raise ValueError(
            f"got {len(questions)} questions but {len(contexts)} contexts; pass lists of the same length "
            "(or one string on either side, asked of / about every item of the other)"
        )
    return questions, contexts, single_q and single_c


def _texts_or_vectors(values: Any, what: str) -> tuple[list[Any] | None, np.ndarray | None, bool]:
    """Sorts an argument of similarity()/search() into ``(texts, None, single)`` or
    ``(None, vectors [n, dim], single)``; ``single`` = one string or one 1-D vector was given."""
    if isinstance(values, (str, bytes)):
        return [values], None, True
    if not isinstance(values, np.ndarray):
        values = list(values)
        if not values:
            raise ValueError(f"{what} is empty: pass at least one string or embedding")
        if all(isinstance(v, (str, bytes)) for v in values):
            return values, None, False
        values = np.asarray(values)
    if values.size == 0:
        raise ValueError(f"{what} is empty: pass at least one string or embedding")
    if values.dtype.kind in "USO":
        return _text_list(values, what), None, False
    if values.dtype.kind not in "fiub" or values.ndim not in (1, 2):
        raise ValueError(f"{what} must be text(s) or embeddings of shape [dim] or [n, dim], got {values.shape}")
    return None, np.atleast_2d(values.astype(np.float32)), values.ndim == 1


def _task_of(meta: contract.ExportMetadata | None, default: str) -> str:
    """The export's own task, or ``default`` when it does not say."""
    return meta.task if meta is not None else default


def cosine_similarity(a: Any, b: Any = None) -> np.ndarray:
    """Cosine similarity between the rows of two embedding matrices.

    A zero vector (e.g. a text of padding only) has similarity 0 to everything, never NaN.

    Args:
        a: ``[n, dim]`` array (or one ``[dim]`` vector).
        b: ``[m, dim]`` array (or one vector); default: ``a`` itself.

    Returns:
        float64 array ``[n, m]``.

    Raises:
        ValueError: the two sides have different dimensions.

    Example:

    ```python
    cosine_similarity([[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0]])
    # array([[1.        ], [0.70710678]])
    ```
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = a if b is None else np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cannot compare embeddings of shapes {a.shape} and {b.shape}: dimensions differ")

    def unit(m: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)

    return np.clip(unit(a) @ unit(b).T, -1.0, 1.0)


# --------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------


def _asynchronous(name: str) -> Callable[..., concurrent.futures.Future]:
    """``Client.<name>_async``: the method run by :meth:`Transport.submit`, returning a Future at once."""

    def method(self: Client, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        return self.submit(getattr(self, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = f"{name}_async"
    method.__doc__ = (
        f"Like :meth:`{name}` (same arguments) but returns at once: a ``concurrent.futures.Future`` whose "
        f"``result()`` is what ``{name}()`` returns (or raises its error). See :meth:`submit`."
    )
    return method


class Client(Transport):
    """A client for a TF Serving-compatible gRPC server serving a kerasbert SavedModel.

    Args:
        host: server host name, or a full ``"host:port"`` target. Defaults to
            ``$KERASBERT_SERVER``, else ``localhost``.
        port: server gRPC port. Defaults to the one in ``$KERASBERT_SERVER``, else 8500.
        model_name: served model name (``--model_name`` of the server). Defaults to
            ``$KERASBERT_MODEL``, else ``"kerasbert"``.
        timeout: seconds to wait for each call.
        signature_name: the SavedModel signature to call.
        version: a model version number (or version label string); ``None`` = latest.
        target: ``"host:port"``; overrides ``host``/``port``.
        batch_size: long input lists are sent in requests of at most this many rows, so
            huge lists stay below gRPC message size limits.
        max_in_flight: how many of those requests are on their way at once (pipelined: the next
            leaves before the previous one is answered); answers are put back in input order.
            1 sends them one after another.
        progress: a progress line on stderr: ``None`` (default) only when stderr is a terminal and
            the list takes several requests, ``True`` always, ``False`` never. Each method's
            ``progress=`` overrides it.
        tls: connect over TLS (implied by any of the three below); without ``ca_cert`` the
            system's CAs verify the server.
        ca_cert: the CA certificate that signed the server's (a path, or PEM text/bytes).
        client_cert, client_key: a client certificate and its key, for servers started with
            ``client_verify: true`` in ``--ssl_config_file`` (mutual TLS).

    Example:

    ```python
    client = Client(target="localhost:8500", model_name="sst2")
    client.status()                     # [(1, 'AVAILABLE')]
    client.classify(["great", "awful"])[1]["label"]   # 'negative'
    client.close()

    # TF Serving's REST API instead of gRPC (the same methods and errors)
    Client("http://localhost:8501", model_name="sst2").classify("great")

    # without waiting: a concurrent.futures.Future per call (bert-as-service's encode_async)
    future = client.encode_async(["a", "b"]); ...; vectors = future.result()

    # TLS (the server's --ssl_config_file), with a client certificate for client_verify
    Client("serving.example.com:8500", model_name="sst2", ca_cert="ca.pem",
           client_cert="client.pem", client_key="client.key")
    ```
    """

    # -- helpers ---------------------------------------------------------------------------

    def _text_inputs(self, texts: Any, text_pairs: Any) -> dict[str, list[Any]]:
        inputs = {contract.TEXT: _text_list(texts, "texts")}
        if text_pairs is not None:
            inputs[contract.TEXT_PAIR] = _text_list(text_pairs, "text_pairs")
            if len(inputs[contract.TEXT_PAIR]) != len(inputs[contract.TEXT]):
                raise ValueError(
                    f"got {len(inputs[contract.TEXT])} texts but {len(inputs[contract.TEXT_PAIR])} text_pairs; "
                    "they must match"
                )
        return inputs

    def _known_metadata(self) -> contract.ExportMetadata | None:
        """The export metadata if the model gives it; ``None`` if it does not or the call fails."""
        try:
            return self.export_metadata()
        except KerasBertClientError:
            return None

    @contextlib.contextmanager
    def _for_task(self, expected: str, hint: str, signature_name: str | None = None) -> Iterator[None]:
        """Turns missing outputs, and a rejected request to a model of another task, into WrongTask.

        ``hint`` says what to do when the model does not tell its task (no export metadata);
        ``signature_name`` is the signature called (default: the client's).
        """
        where = f"signature '{signature_name or self.signature_name}' of {self._describe_model()}"
        try:
            yield
        except decoders.MissingOutputs as err:
            raise self._wrong_task(expected, f"{where} has {err}", _hint_from_outputs(err.available, hint)) from None
        except InvalidInput as err:  # e.g. no 'text_pair' input, or no 'tokens' signature
            meta = self._known_metadata()
            if meta is None or meta.task == expected:
                raise
            raise self._wrong_task(expected, f"{where} rejected the request ({err.details})", hint, meta) from err

    def _wrong_task(
        self, expected: str, problem: str, hint: str, meta: contract.ExportMetadata | None = None
    ) -> WrongTask:
        """The error for calling a method of task ``expected``; ``problem`` says what went wrong."""
        meta = meta or self._known_metadata()
        if meta is None:
            message = (
                f"{problem}; {hint}. The model does not say which task it performs (no kerasbert "
                f"'{contract.METADATA_SIGNATURE}' signature: an export from an older kerasbert, or not a "
                f"kerasbert export); predict() returns its outputs as they are"
            )
            return WrongTask(message, None, expected)
        if meta.task != expected:
            use = TASK_METHODS.get(meta.task, "predict()")
            message = (
                f"{self._describe_model()} is {_a(meta.task)} export, not {_a(expected)} one: use {use} ({problem})"
            )
        else:
            message = (
                f"{problem}; the model is {_a(expected)} export with the signatures "
                f"{', '.join(sorted(meta.signatures))}: is signature_name right?"
            )
        return WrongTask(message, meta.task, expected)

    @property
    def task(self) -> str | None:
        """The served model's task (one of ``kerasbert.contract.TASKS``), from its export metadata.

        ``None`` when the model does not say (no ``metadata`` signature: an export from an older
        kerasbert, or not a kerasbert export). Asks the server once per model/version (see
        :meth:`export_metadata`), so it raises ServerUnavailable, ModelNotFound... like any call.

        Example:

        ```python
        {"classification": client.classify, "token_classification": client.entities}[client.task]("Paris")
        ```
        """
        try:
            return self.export_metadata().task
        except NoExportMetadata:
            return None

    # -- API -------------------------------------------------------------------------------

    def classify(
        self,
        texts: str | Iterable[str],
        text_pairs: str | Iterable[str] | None = None,
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Classifies texts (or text pairs) with a classification export.

        Args:
            texts: one string or a list of strings.
            text_pairs: for pair tasks (e.g. MRPC), the second strings, one per text.
            batch_size: rows per request (default: the client's ``batch_size``).
            progress: a progress line on stderr (default: the client's ``progress``).

        Returns:
            One dict per text (also for a single string): ``label`` (str), ``label_id`` (int)
            and ``probabilities`` (class name -> float).

        Example:

        ```python
        client.classify("what a great film")
        # [{'label': 'positive', 'label_id': 1, 'probabilities': {'negative': 0.1, 'positive': 0.9}}]
        ```
        """
        with self._for_task(contract.CLASSIFICATION, "use regress() or predict()"):
            outputs = self.predict(self._text_inputs(texts, text_pairs), batch_size=batch_size, progress=progress)
            return decoders.classification(outputs)

    def regress(
        self,
        texts: str | Iterable[str],
        text_pairs: str | Iterable[str] | None = None,
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Scores texts (or text pairs) with a regression export (e.g. STS-B).

        Args:
            texts: one string or a list of strings.
            text_pairs: the second strings for pair tasks, one per text.
            batch_size: rows per request (default: the client's ``batch_size``).
            progress: a progress line on stderr (default: the client's ``progress``).

        Returns:
            float32 array of shape ``[len(texts)]`` with the ``score`` output.

        Example:

        ```python
        client.regress("A man plays guitar.", "Someone plays an instrument.")  # array([3.9], dtype=float32)
        ```
        """
        with self._for_task(contract.REGRESSION, "use classify() or predict()"):
            outputs = self.predict(self._text_inputs(texts, text_pairs), batch_size=batch_size, progress=progress)
            return decoders.regression(outputs)

    def encode(
        self,
        texts: str | Iterable[str],
        batch_size: int | None = None,
        *,
        sort_by_length: bool = True,
        show_tokens: bool = False,
        progress: bool | None = None,
    ) -> np.ndarray | tuple[np.ndarray, list[list[str]]]:
        """Embeds texts with an embedding export (``python -m kerasbert.export --mode embedding``).

        Like bert-as-service's ``BertClient.encode``: long lists are sent in requests of at most
        ``batch_size`` texts, up to the client's ``max_in_flight`` requests at once (pipelined),
        and each request waits at most the client's ``timeout``; rows come back in your order.

        Args:
            texts: one string or a list of strings.
            batch_size: texts per request (default: the client's ``batch_size``).
            sort_by_length: send texts of similar length together (the answer keeps your order).
                Exports pad each request only to its longest text, so this saves work.
            show_tokens: also return each text's WordPieces (``[CLS]`` and ``[SEP]`` included), from the
                export's ``tokens`` signature, like bert-as-service's ``show_tokens``.
            progress: a progress line on stderr (default: the client's ``progress``; off when stderr is not
                a terminal).

        Returns:
            float32 array ``[len(texts), dim]`` (one row also for a single string); with
            ``show_tokens``, ``(vectors, tokens)`` where ``tokens[i]`` is the list of text i's WordPieces.

        Raises:
            ValueError: no texts.
            NotAString: a text is not a string (the message names its position; also a TypeError).
            ServerUnavailable, RequestTimeout, ModelNotFound: see :class:`KerasBertClientError`.
            WrongTask: the model is not an embedding export (the message says what to call
                instead), or the signature has no ``embeddings`` output.

        Example:

        ```python
        vectors = client.encode(["First do it", "then do it right"])   # shape (2, 384)
        vectors, tokens = client.encode(["hello world"], show_tokens=True)
        tokens   # [['[CLS]', 'hello', 'world', '[SEP]']]
        ```
        """
        texts = _text_list(texts, "texts")
        order = np.arange(len(texts))
        if sort_by_length:
            order = np.argsort([len(t) for t in texts], kind="stable")
        hint = "export the model with `python -m kerasbert.export --mode embedding`"
        with self._for_task(contract.EMBEDDING, hint):
            embeddings = decoders.embeddings(
                self.predict({contract.TEXT: [texts[i] for i in order]}, batch_size=batch_size, progress=progress)
            )
        result = np.empty_like(embeddings)
        result[order] = embeddings
        if not show_tokens:
            return result
        return result, [
            [row["token"] for row in text_tokens] for text_tokens in self.tokens(texts, batch_size=batch_size)
        ]

    def encode_tokens(
        self,
        texts: str | Iterable[str],
        signature_name: str = contract.TOKENS_SIGNATURE,
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Per-token vectors from an embedding export's token signature, padding removed.

        Args:
            texts: one string or a list of strings.
            signature_name: the signature returning ``token_embeddings``, ``tokens`` and ``mask``.
            batch_size: texts per request (default: the client's ``batch_size``).

        Returns:
            One dict per text: ``tokens`` (list of WordPiece strings, with ``[CLS]``/``[SEP]``)
            and ``embeddings`` (float32 ``[len(tokens), dim]``).

        Example:

        ```python
        [row] = client.encode_tokens("unaffable")
        row["tokens"]            # ['[CLS]', 'una', '##ffa', '##ble', '[SEP]']
        row["embeddings"].shape  # (5, 384)
        ```
        """
        texts = _text_list(texts, "texts")
        with self._for_task(contract.EMBEDDING, "call the embedding export's token signature", signature_name):
            batches = self._predict_batches(
                {contract.TEXT: texts}, batch_size=batch_size, signature_name=signature_name, progress=progress
            )
            return [row for _, outputs in batches for row in decoders.token_embeddings(outputs)]

    def _embed(self, *items: Any, names: Sequence[str], batch_size: int | None) -> list[tuple[np.ndarray, bool]]:
        """Each item (texts or embeddings) as ``(matrix, single)``; all texts go in one encode()."""
        parsed = [_texts_or_vectors(item, name) for item, name in zip(items, names)]
        texts = [t for item_texts, _, _ in parsed for t in (item_texts or [])]
        encoded = self.encode(texts, batch_size=batch_size) if texts else None
        results, start = [], 0
        for item_texts, vectors, single in parsed:
            if item_texts is not None:
                vectors, start = encoded[start : start + len(item_texts)], start + len(item_texts)
            results.append((vectors, single))
        return results

    def similarity(self, a: Any, b: Any = None, batch_size: int | None = None) -> float | np.ndarray:
        """Cosine similarity of texts (embedded by the server) or of embeddings you already have.

        Args:
            a: a string, a list of strings, or embeddings (``[dim]`` or ``[n, dim]``).
            b: the same kinds; default ``a`` (the similarity matrix of ``a`` with itself).
            batch_size: texts per request (default: the client's ``batch_size``).

        Returns:
            A float when ``a`` and ``b`` are single (a string or one vector), else a float64
            matrix ``[len(a), len(b)]``.

        Example:

        ```python
        client.similarity("A man plays guitar.", "Someone plays an instrument.")   # 0.687 (all-MiniLM-L6-v2)
        client.similarity(["cat", "dog", "car"])   # 3x3 matrix, ones on the diagonal
        ```
        """
        items = [a] if b is None else [a, b]
        embedded = self._embed(*items, names=["a", "b"][: len(items)], batch_size=batch_size)
        (ma, single_a), (mb, single_b) = embedded[0], embedded[-1]
        scores = cosine_similarity(ma, mb)
        return float(scores[0, 0]) if single_a and single_b else scores

    def search(self, query: Any, corpus: Any, k: int = 5, batch_size: int | None = None) -> list[Any]:
        """Top-k nearest neighbours by cosine similarity, like sentence-transformers' ``semantic_search``.

        Args:
            query: a string, a list of strings, or query embeddings.
            corpus: a list of strings (embedded here) or corpus embeddings ``[n, dim]``
                (embed a large corpus once with :meth:`encode` and pass the array).
            k: how many hits per query (at most the corpus size).
            batch_size: texts per request (default: the client's ``batch_size``).

        Returns:
            For one query, a list of ``{"corpus_id", "score", "text"}`` dicts, best first
            (``text`` only when the corpus was given as strings; ties keep corpus order);
            for several queries, one such list per query.

        Raises:
            ValueError: ``k`` < 1, or an empty query/corpus.

        Example:

        ```python
        client.search("a feline", ["a dog", "a cat", "a car"], k=2)
        # [{'corpus_id': 1, 'score': 0.673, 'text': 'a cat'}, {'corpus_id': 0, 'score': 0.480, 'text': 'a dog'}]
        ```
        """
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not isinstance(corpus, (str, bytes, np.ndarray)):
            corpus = list(corpus)  # read twice below
        corpus_texts = _texts_or_vectors(corpus, "corpus")[0]
        (queries, single), (documents, _) = self._embed(query, corpus, names=["query", "corpus"], batch_size=batch_size)
        scores = cosine_similarity(queries, documents)
        k = min(int(k), scores.shape[1])
        hits = []
        for row in scores:
            best = np.argsort(-row, kind="stable")[:k]
            found = [{"corpus_id": int(i), "score": float(row[i])} for i in best]
            if corpus_texts is not None:
                for hit in found:
                    hit["text"] = corpus_texts[hit["corpus_id"]]
            hits.append(found)
        return hits[0] if single else hits

    # -- token classification ----------------------------------------------------------------

    def entities(
        self, texts: str | Iterable[str], batch_size: int | None = None, *, progress: bool | None = None
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Named entities found by a token-classification (NER) export, with offsets into your text.

        Args:
            texts: one string, or a list of strings.
            batch_size: texts per request (default: the client's ``batch_size``).

        Returns:
            For one string, its list of entities; for a list, one such list per text. An entity
            is ``{"label": str, "start": int, "end": int, "text": str, "score": float}`` where
            ``start``/``end`` are Python string offsets (Unicode code points) into the text as
            you gave it, so ``text[start:end] == entity["text"]`` (also for accents, CJK, emoji
            and runs of spaces). Entities come in text order; a text without any gives ``[]``.

        Raises:
            ValueError: no texts. NotAString: a text is not a string (the message names it).
            WrongTask: the model is not a token-classification export (the message says what to
                call instead). ServerUnavailable, ModelNotFound, ...: as for any call.

        Example:

        ```python
        client.entities("Angela Merkel besuchte Paris.")
        # [{'label': 'PER', 'start': 0, 'end': 13, 'text': 'Angela Merkel', 'score': 0.98},
        #  {'label': 'LOC', 'start': 23, 'end': 28, 'text': 'Paris', 'score': 0.99}]
        ```
        """
        single = isinstance(texts, (str, bytes))
        texts = [_as_str(t, i) for i, t in enumerate(_text_list(texts, "texts"))]
        hint = "export a token_classification model (`python -m kerasbert.train --task token_classification`)"
        with self._for_task(contract.TOKEN_CLASSIFICATION, hint):
            rows = [
                row
                for part, outputs in self._predict_batches(
                    {contract.TEXT: texts}, batch_size=batch_size, progress=progress
                )
                for row in decoders.entities(outputs, texts[part])
            ]
        return rows[0] if single else rows

    def tokens(
        self,
        texts: str | Iterable[str],
        signature_name: str = contract.TOKENS_SIGNATURE,
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """The WordPieces the model sees, from the export's ``tokens`` signature: every export kind has one.

        Classification, regression and question-answering exports give each text's WordPieces with
        offsets (no ``[CLS]``/``[SEP]``); token-classification exports add each WordPiece's tag and its
        probability; embedding exports give the packed sequence (``[CLS]`` ... ``[SEP]``, no offsets).

        Args:
            texts: one string, or a list of strings.
            signature_name: the signature returning ``tokens`` (and, where the export has them,
                ``token_starts``/``token_ends``, ``token_labels``/``token_probabilities`` or ``mask``).
            batch_size: texts per request (default: the client's ``batch_size``).
            progress: a progress line on stderr (default: the client's ``progress``).

        Returns:
            For one string, its list of tokens; for a list, one such list per text. A token is
            ``{"token": str, "start": int | None, "end": int | None}`` plus ``"label": str`` and
            ``"probability": float`` for token-classification exports; offsets are code points into
            the text (``text[start:end]`` is the token's source), ``None`` for tokens that are not in
            it (``[CLS]``, ``[SEP]``) or when the export gives no offsets. Padding is removed.

        Raises:
            SignatureNotFound: the export has no ``tokens`` signature (classification, regression and
                QA exports written before kerasbert added it: export the model again).
            NotAString, ServerUnavailable, ModelNotFound, ...: as for :meth:`entities`.

        Example:

        ```python
        client.tokens("Paris")   # a token-classification export
        # [{'token': '[CLS]', 'label': 'O', 'probability': 0.99, 'start': None, 'end': None},
        #  {'token': 'paris', 'label': 'B-LOC', 'probability': 0.97, 'start': 0, 'end': 5}, ...]
        client.tokens("Unaffable!")   # a classification export
        # [{'token': 'una', 'start': 0, 'end': 3}, {'token': '##ffa', 'start': 3, 'end': 6}, ...]
        ```
        """
        single = isinstance(texts, (str, bytes))
        texts = [_as_str(t, i) for i, t in enumerate(_text_list(texts, "texts"))]
        try:
            batches = self._predict_batches(
                {contract.TEXT: texts}, batch_size=batch_size, signature_name=signature_name, progress=progress
            )
            rows = [row for _, outputs in batches for row in decoders.tokens(outputs)]
        except SignatureNotFound as err:
            meta = self._known_metadata()
            kind = f"{_a(meta.task)} export" if meta is not None else "an export"
            raise SignatureNotFound(
                f"{self._describe_model()} is {kind} without a '{signature_name}' signature: exports written "
                f"before kerasbert gave every export kind one lack it; export the model again ({err.details})",
                err.code,
                err.details,
            ) from None
        except decoders.MissingOutputs as err:
            raise self._wrong_task(
                _task_of(self._known_metadata(), contract.TOKEN_CLASSIFICATION),
                f"signature '{signature_name}' of {self._describe_model()} has {err}",
                "pass the signature that returns 'tokens'",
            ) from None
        return rows[0] if single else rows

    # -- question answering --------------------------------------------------------------------

    def answer(
        self,
        questions: str | Iterable[str],
        contexts: str | Iterable[str],
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Extractive answers from a question-answering export: the span of each context that answers its question.

        Args:
            questions: one string, or a list of strings.
            contexts: the paragraphs to take the answers from: one string, or a list of strings.
                Two lists pair item by item (they must have the same length). One string against a
                list is paired with every item of it: one question asked of many paragraphs, or many
                questions about one paragraph. Contexts longer than the export's windows are
                handled by the server (sliding windows, nothing truncated).
            batch_size: question/context pairs per request (default: the client's ``batch_size``).

        Returns:
            For one question and one context, a dict; when either side is a list, one dict per
            pair, in order. The dict is ``{"answer": str, "start": int, "end": int, "score": float,
            "n_best": [{"answer", "start", "end", "score"}, ...]}``: ``start``/``end`` are Python
            string offsets (Unicode code points) into the context as you gave it, so
            ``context[start:end] == answer`` (also for accents, CJK and emoji); ``score`` is the
            best span's probability among the n-best (the export's ``n_best``, best first, padding
            dropped). A context without any candidate span (e.g. empty) gives ``answer`` ``""``,
            ``start`` = ``end`` = -1 (the slice is still ``""``), ``score`` 0 and ``n_best`` ``[]``.

        Raises:
            ValueError: no questions or contexts, or lists of different lengths.
            NotAString: a question or context is not a string (the message names it).
            WrongTask: the model is not a question-answering export (the message says what to call
                instead). ServerUnavailable, ModelNotFound, ...: as for any call.

        Example:

        ```python
        client.answer("Where did Mary go?", "Yesterday Mary went to Paris.")
        # {'answer': 'Paris', 'start': 23, 'end': 28, 'score': 0.97,
        #  'n_best': [{'answer': 'Paris', 'start': 23, 'end': 28, 'score': 0.97}, ...]}
        client.answer("Who went?", ["Mary went to Paris.", "Bob went to Rome."])   # one dict per context
        ```
        """
        questions, contexts, single = _questions_and_contexts(questions, contexts)
        hint = "export a question_answering model (`python -m kerasbert.train --task question_answering`)"
        with self._for_task(contract.QUESTION_ANSWERING, hint):
            rows = [
                row
                for _, outputs in self._predict_batches(
                    {contract.QUESTION: questions, contract.CONTEXT: contexts}, batch_size=batch_size, progress=progress
                )
                for row in decoders.answers(outputs)
            ]
        return rows[0] if single else rows

    # -- without waiting -------------------------------------------------------------------------

    classify_async = _asynchronous("classify")
    regress_async = _asynchronous("regress")
    encode_async = _asynchronous("encode")
    encode_tokens_async = _asynchronous("encode_tokens")
    similarity_async = _asynchronous("similarity")
    search_async = _asynchronous("search")
    entities_async = _asynchronous("entities")
    tokens_async = _asynchronous("tokens")
    answer_async = _asynchronous("answer")
    predict_async = _asynchronous("predict")
