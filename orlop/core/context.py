"""The operation a line of log or an event belongs to: an ID per request, and its volume.

A frontend (Docker's socket, CSI, the admin API) opens an `operation()` at the start of each
call; the service opens one where none is open (a background round, a test calling it
directly). The ID and the volume live in context variables, so they follow the call through
its coroutines, and `VolumeRegistry.call` carries them into the worker thread a backend call
runs in (`contextvars.copy_context`). `ContextFilter` puts them on every log record:
`volume=… op=…` at the end of a text line, `volume`/`driver`/`operation`/`op` fields in JSON.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast


@dataclass(frozen=True, slots=True)
class Operation:
    op: str  # the ID: 12 hex digits
    name: str = ""  # what: create, mount, …
    driver: str = ""
    volume: str = ""


_CURRENT: ContextVar[Operation | None] = ContextVar("orlop_operation", default=None)


def new_id() -> str:
    return secrets.token_hex(6)


def current() -> Operation | None:
    return _CURRENT.get()


def current_id() -> str:
    operation = _CURRENT.get()
    return operation.op if operation else ""


@contextlib.contextmanager
def operation(
    name: str = "", driver: str = "", volume: str = "", op: str | None = None
) -> Iterator[Operation]:
    """A new operation (a new ID unless `op` is given) for the duration of the block."""
    opened = Operation(op or new_id(), name, driver, volume)
    token = _CURRENT.set(opened)
    try:
        yield opened
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def ensure(name: str = "", driver: str = "", volume: str = "") -> Iterator[Operation]:
    """The operation open now, with what it lacks filled in (its name, driver, volume); a new
    one when none is open. What the caller knows better (a frontend's name) stays."""
    now = _CURRENT.get()
    if now is None:
        with operation(name, driver, volume) as opened:
            yield opened
        return
    filled = replace(
        now,
        name=now.name or name,
        driver=now.driver or driver,
        volume=now.volume or volume,
    )
    token = _CURRENT.set(filled)
    try:
        yield filled
    finally:
        _CURRENT.reset(token)


class ContextFilter(logging.Filter):
    """Put the current operation's `op`, `operation`, `driver` and `volume` on a record (those
    the record does not carry already); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        now = _CURRENT.get()
        if now is not None:
            for key, value in (
                ("op", now.op),
                ("operation", now.name),
                ("driver", now.driver),
                ("volume", now.volume),
            ):
                if value and not hasattr(record, key):
                    setattr(record, key, value)
        return True


def suffix(record: logging.LogRecord) -> str:
    """` volume=NAME op=ID` for a text line (empty without an operation)."""
    parts = [
        f"{key}={getattr(record, key)}" for key in ("volume", "op") if getattr(record, key, "")
    ]
    return " " + " ".join(parts) if parts else ""


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def traced(name: str, volume_argument: bool = True) -> Callable[[F], F]:
    """Run a service method `(self, driver, volume, …)` in an operation (the one open now,
    or a new one): its log lines and events carry the ID, the driver and the volume."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        async def run(self: Any, driver: str, *args: Any, **kwargs: Any) -> Any:
            volume = args[0] if volume_argument and args and isinstance(args[0], str) else ""
            with ensure(name, driver, volume):
                return await method(self, driver, *args, **kwargs)

        return cast(F, run)

    return decorate
