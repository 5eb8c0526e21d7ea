"""CSI's status codes for Orlop's errors, and the in-flight guard that answers ABORTED."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from orlop.core.model import (
    BackendError,
    ConfigError,
    Conflict,
    InvalidName,
    InvalidOption,
    NotFound,
    OrlopError,
)


class CsiError(OrlopError):
    """An error with the gRPC status code CSI prescribes for it."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def invalid(message: str) -> CsiError:
    return CsiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def require(value: str, field: str, call: str) -> str:
    """`value`, or INVALID_ARGUMENT naming the missing field."""
    if not value:
        raise invalid(f"{call}: {field} is required")
    return value


_CODES: list[tuple[type[OrlopError], grpc.StatusCode]] = [
    (InvalidName, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidOption, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (BackendError, grpc.StatusCode.INTERNAL),
]


def status_code(error: OrlopError) -> grpc.StatusCode:
    if isinstance(error, CsiError):
        return error.code
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


class InFlight:
    """Names of volumes (and snapshots) with a CSI call under way: a second call on the same
    one is answered ABORTED at once, as CSI asks, instead of queueing behind the first."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    @contextlib.contextmanager
    def guard(self, key: str) -> Iterator[None]:
        if key in self._busy:
            raise CsiError(
                grpc.StatusCode.ABORTED,
                f"an operation on {key} is already in progress: retry when it ends",
            )
        self._busy.add(key)
        try:
            yield
        finally:
            self._busy.discard(key)
