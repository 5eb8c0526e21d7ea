"""Per driver: did its backend answer? What `orlop status` and `/healthz` say of it.

Fed by every outcome that reached a backend: a volume operation (through `counters`), each
attempt of a cloud provider call (so a call that retries for 100 s shows the backend down at
its first failed attempt, not at its end), discovery passes, recovery's repairs and snapshot
schedules. An outcome says one of three things:

- the backend answered: a success, or a refusal of the request (a cloud's "invalid",
  "not found", "in use elsewhere"; throttling is an answer too);
- the backend is down: a provider or API fault (BackendError of any other kind: unreachable,
  failed, credentials refused), or a connection error;
- nothing: a user's error Orlop found itself (InvalidOption, NotFound, Conflict raised
  before any backend call), a cancelled call, a bug.

A backend that does not answer at all (a hung endpoint, a black-holed route) is down too: a
read of a provider (a call that only asks) or a discovery pass still waiting after `SLOW`
seconds, with no answer from that backend since it began, marks it down ("no answer for
…") without waiting for the call's own timeout (30 s, and retries after it). `sweep`
finds those; the daemon runs it every second, and `orlop status` and `/healthz` before
they answer. Writes are not watched: a cloud may hold one for minutes (a vSphere task,
a Cinder delete) while answering fine.

One log line when a driver goes down (WARNING) and one when it is back (INFO), never one
per failed call. Shared vocabulary like `counters` (imported by every layer), so it
imports nothing of Orlop's but the model; reported from the event loop and from worker
threads (provider calls), hence the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from orlop.core.model import BackendError, rfc3339

log = logging.getLogger("orlop.reachability")

# A cloud error's `kind` that is the provider answering (refusing the request's values, or
# asking to slow down), not the provider failing.
ANSWER_KINDS = frozenset({"invalid", "not found", "in use elsewhere", "throttled"})
SLOW = 15.0  # seconds a watched call may wait with no answer before its backend is down
MAX_ERROR = 500  # characters of an error kept for status (a provider's message can be long)


@dataclass
class Reach:
    """One driver's backend, as last seen."""

    up: bool | None = None  # None: nothing reached it yet
    since: float | None = None  # unix time it went down (or came back up)
    error: str = ""  # the last fault while down ("" when up)
    source: str = ""  # what found the last fault: request, provider call, discovery, …
    last_answer: float | None = None  # unix time of its last answer, whenever that was
    faults: int = 0  # faults seen since it went down


def as_time(stamp: float | None) -> str | None:
    """Unix time as RFC 3339 (None stays None)."""
    return None if stamp is None else rfc3339(stamp)


_STATE: dict[str, Reach] = {}
_LOCK = threading.Lock()
# driver → call token → (unix time it began, what it is): watched calls in flight
_WAITING: dict[str, dict[int, tuple[float, str]]] = {}
_TOKENS = itertools.count()


class NoAnswer(BackendError):
    """A watched call has waited `SLOW` seconds and more without an answer."""


@contextlib.contextmanager
def waiting(driver: str, what: str) -> Iterator[None]:
    """Watch one call to `driver`'s backend while it runs (see `sweep`)."""
    token = next(_TOKENS)
    with _LOCK:
        _WAITING.setdefault(driver, {})[token] = (time.time(), what)
    try:
        yield
    finally:
        with _LOCK:
            _WAITING.get(driver, {}).pop(token, None)


def sweep(slow: float = SLOW) -> list[str]:
    """Mark down every driver whose oldest watched call has waited `slow` seconds or more
    with no answer from its backend since that call began; the drivers it marked."""
    now = time.time()
    hung = []
    with _LOCK:
        for driver, calls in _WAITING.items():
            if not calls:
                continue
            began, what = min(calls.values())
            reach = _STATE.get(driver)
            if now - began < slow or (reach is not None and reach.up is False):
                continue
            if reach is not None and reach.last_answer is not None and reach.last_answer >= began:
                continue
            hung.append((driver, now - began, what))
    for driver, waited, what in hung:
        report(driver, NoAnswer(f"no answer for {waited:.0f} s ({what})"), "no answer")
    return [driver for driver, _, _ in hung]


def says(error: BaseException | None) -> bool | None:
    """What an outcome says of the backend: True it answered, False it is down, None nothing."""
    if error is None:
        return True
    if isinstance(error, asyncio.CancelledError):
        return None
    kind = getattr(error, "kind", None)
    if kind is not None and str(kind) in ANSWER_KINDS:
        return True
    if isinstance(error, BackendError):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return False
    return None


def report(driver: str, error: BaseException | None = None, source: str = "request") -> None:
    """Record one outcome of `driver`'s backend (see `says`)."""
    said = says(error)
    if said is None:
        return
    now = time.time()
    down_since, faults = now, 0
    with _LOCK:
        reach = _STATE.setdefault(driver, Reach())
        was = reach.up
        if said:
            reach.last_answer = now
            if was is False:
                down_since, faults = reach.since or now, reach.faults
            reach.up, reach.error, reach.faults = True, "", 0
            if was is not True:
                reach.since = now
        else:
            reach.faults += 1
            reach.error = message = str(error)[:MAX_ERROR] or type(error).__name__
            reach.source = source
            if was is not False:
                reach.up, reach.since = False, now
    if said and was is False:
        log.info(
            "driver %s: backend answers again (down since %s, %d fault(s))",
            driver,
            rfc3339(down_since),
            faults,
        )
    elif not said and was is not False:
        log.warning("driver %s: backend DOWN (%s): %s", driver, source, message)


def state(driver: str) -> Reach | None:
    """A copy of what is known of `driver`'s backend; None before anything reached it."""
    with _LOCK:
        reach = _STATE.get(driver)
        return None if reach is None else Reach(**vars(reach))


def ever_answered(driver: str) -> bool:
    with _LOCK:
        reach = _STATE.get(driver)
        return reach is not None and reach.last_answer is not None


def down(drivers: list[str] | None = None) -> list[str]:
    """The drivers (of `drivers`, or all known) whose backend is down now, sorted."""
    with _LOCK:
        names = _STATE if drivers is None else drivers
        return sorted(n for n in names if n in _STATE and _STATE[n].up is False)


def forget(driver: str | None = None) -> None:
    """Forget what is known (of one driver, or all): for tests, which share the process."""
    with _LOCK:
        if driver is None:
            _STATE.clear()
            _WAITING.clear()
        else:
            _STATE.pop(driver, None)
            _WAITING.pop(driver, None)
