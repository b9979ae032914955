"""TF Serving's status codes (gRPC canonical codes) and the HTTP status each one becomes over REST.

The table is TF Serving's own (``ToHTTPStatusCode`` in ``model_servers/http_server.cc``), so the
development server answers with the same HTTP status TF Serving would, and the clients can tell a
retryable answer from a final one the same way for both protocols.
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
    """gRPC canonical status codes, numbered as in ``grpc.StatusCode`` and ``tensorflow.error.Code``."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}

# Answers that may succeed when the same request is sent again: the server was busy, restarting or
# slow. Everything else (bad input, unknown model, a bug in the model) fails the same way again.
RETRYABLE_CODES = frozenset({Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED, Code.DEADLINE_EXCEEDED, Code.ABORTED})
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})


class ServingStatus(Exception):
    """A request failed with a canonical code; ``message`` is what the server tells the caller."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def invalid_argument(message: str) -> ServingStatus:
    return ServingStatus(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingStatus:
    return ServingStatus(Code.NOT_FOUND, message)
