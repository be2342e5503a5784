"""The typed errors of :class:`kerasbert.client.Client`: one class per way a call can fail."""

from __future__ import annotations


class KerasBertClientError(Exception):
    """Base class of all errors raised by :class:`Client` for failed server calls.

    Attributes:
        code: the gRPC status code name (e.g. ``"UNAVAILABLE"``; over REST the one the HTTP status stands
            for), or ``None``.
        details: the server's own error message, or ``None``.

    Example:

    ```python
    try:
        Client("localhost:8500").classify("hello")
    except KerasBertClientError as err:
        print(err)
    ```
    """

    def __init__(self, message: str, code: str | None = None, details: str | None = None):
        super().__init__(message)
        self.code = code
        self.details = details


class ServerUnavailable(KerasBertClientError, ConnectionError):
    """No server answers at the client's address (gRPC ``UNAVAILABLE``)."""


class ModelNotFound(KerasBertClientError, LookupError):
    """The server runs but does not serve the requested model/version (gRPC ``NOT_FOUND``)."""


class InvalidInput(KerasBertClientError, ValueError):
    """The server rejected the request (gRPC ``INVALID_ARGUMENT``): wrong input names,
    dtypes, shapes or signature name. The message carries the server's explanation."""


class NotAString(InvalidInput, TypeError):
    """A text argument holds something that is not a string (``None``, a number...); raised before any
    request is sent, and the message names the argument and the index. Also a ``TypeError``, as before."""


class SignatureNotFound(InvalidInput):
    """The model has no signature named like the client's ``signature_name`` (TF Serving answers
    ``FAILED_PRECONDITION``, ``kerasbert.serve`` ``NOT_FOUND``)."""


class RequestTimeout(KerasBertClientError, TimeoutError):
    """The server did not answer within the client's ``timeout`` (gRPC ``DEADLINE_EXCEEDED``)."""


class NoExportMetadata(KerasBertClientError, LookupError):
    """The model does not say which task it performs: it has no ``metadata`` signature (an export
    from an older kerasbert, or not a kerasbert export), or that signature's answer is not
    kerasbert export metadata. :meth:`Client.predict` still works on it."""


class WrongTask(KerasBertClientError):
    """A task method was called on a model of another task (e.g. ``classify()`` on an embedding
    export), or the signature lacks the outputs the method decodes.

    Attributes:
        task: the model's own task (from its export metadata), or ``None`` when it does not say.
        expected: the task the called method is for (a name in ``kerasbert.contract.TASKS``).
    """

    def __init__(
        self, message: str, task: str | None, expected: str, code: str | None = None, details: str | None = None
    ):
        super().__init__(message, code, details)
        self.task = task
        self.expected = expected
