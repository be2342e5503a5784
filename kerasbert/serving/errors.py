"""Errors carrying a gRPC status code, shared by the gRPC and REST front ends."""

from __future__ import annotations

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
