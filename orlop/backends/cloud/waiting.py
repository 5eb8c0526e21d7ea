"""Waiting and retrying, the same way for every cloud: polls with growing pauses, and
full-jitter exponential backoff (as AWS and Google recommend) for throttled calls."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from orlop.backends.cloud.api import CloudError, CloudSettings, ErrorKind
from orlop.core.model import BackendError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Kinds worth another try: throttling always; server faults and silence only for calls that
# change nothing (a write that failed may still have happened: examine it, never repeat it).
_ALWAYS = frozenset({ErrorKind.THROTTLED})
_IF_REPEATABLE = frozenset({ErrorKind.RETRYABLE, ErrorKind.UNREACHABLE})


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, poll_max: float = 2.0
) -> T:
    """Poll `check` with growing pauses until it returns a value; BackendError after `timeout`."""
    deadline = time.monotonic() + timeout
    # Start fast (a fake, or a quick cloud, answers within milliseconds) and back off by
    # half each time: ~13 checks in the first 4 s, then one every `poll_max`.
    pause = 0.01
    while True:
        result = check()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BackendError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(pause, remaining))
        pause = min(pause * 1.5, poll_max)


def backoff(settings: CloudSettings, attempt: int) -> float:
    """Full-jitter exponential backoff: a random pause up to base·2^(attempt-1), capped."""
    ceiling = min(settings.api_retry_cap, settings.api_retry_base * 2 ** (attempt - 1))
    return random.uniform(0, ceiling)


def call_with_retries(
    settings: CloudSettings, what: str, function: Callable[[], T], repeatable: bool
) -> T:
    """Call `function`, retrying throttling (and, when `repeatable`, transient faults)."""
    attempts = max(1, settings.api_max_attempts)
    for attempt in range(1, attempts + 1):
        try:
            return function()
        except CloudError as error:
            retry = error.kind in _ALWAYS or (repeatable and error.kind in _IF_REPEATABLE)
            if not retry or attempt == attempts:
                if error.kind is ErrorKind.THROTTLED:
                    raise CloudError(
                        f"{error} (still throttled after {attempt} attempts; try again later)",
                        error.kind,
                        error.code,
                        error.holder,
                    ) from None
                raise
            log.info("%s: %s (attempt %d), retrying", what, error.kind, attempt)
        time.sleep(backoff(settings, attempt))
    raise AssertionError("unreachable")
