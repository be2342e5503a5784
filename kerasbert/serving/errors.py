"""Errors carrying a gRPC status code, shared by the gRPC and REST front ends."""

from __future__ import annotations

import re
import secrets

import grpc

# HTTP status per gRPC code, as TF Serving's REST API maps them.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class ServingError(Exception):
    """A request failure with the gRPC status code to answer with.

    Args:
        code: a `grpc.StatusCode`, e.g. `grpc.StatusCode.NOT_FOUND`.
        message: a one-line, human-readable explanation.

    Example:

    >>> err = ServingError(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(foo)")
    >>> err.http_status
    404
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status the REST API answers this error with."""
        return _HTTP_STATUS.get(self.code, 500)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def not_found(message: str) -> ServingError:
    """Shorthand for a `NOT_FOUND` `ServingError`."""
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def invalid_argument(message: str) -> ServingError:
    """Shorthand for an `INVALID_ARGUMENT` `ServingError`."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def status_code_from_int(value: int) -> grpc.StatusCode:
    """The `grpc.StatusCode` whose canonical number is `value` (TF error codes use the same numbers)."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


# An absolute POSIX path (or file:// URI) at the start of the text or after a space, quote, bracket, = or colon.
_ABS_PATH = re.compile(r"""(?<![\w.~-])(?:file://)?(?:/[^\s'"`,;:()\[\]<>]+)+""")


def public_message(error: BaseException | str) -> str:
    """The first line of an error, fit for clients: absolute paths shortened to their last part.

    Use it for anything that reaches a client from a load or runtime failure (model status messages, op
    errors); the full text belongs in the server log.

    Example:

    >>> public_message(OSError("Failed to find any matching files for /srv/m/1/variables/variables\\nmore"))
    'Failed to find any matching files for …/variables'
    >>> public_message("SavedModel file does not exist at: /home/u/exports/sst2/3/{saved_model.pbtxt|saved_model.pb}")
    'SavedModel file does not exist at: …/{saved_model.pbtxt|saved_model.pb}'
    """
    text = error if isinstance(error, str) else str(error)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "unknown error" if isinstance(error, str) else "error while loading or running the model"
    return _ABS_PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], lines[0])


def internal_error(context: str) -> ServingError:
    """An INTERNAL error for an unexpected exception: a generic message plus a reference to find the log line.

    The caller logs the traceback with the same reference (`error.reference`); the client learns neither the
    exception class nor its text.

    Example:

    >>> err = internal_error("Predict")
    >>> err.message.startswith("Internal error in Predict (reference ")
    True
    """
    reference = secrets.token_hex(4)
    error = ServingError(grpc.StatusCode.INTERNAL, f"Internal error in {context} (reference {reference})")
    error.reference = reference
    return error
