"""Boot order: a Mount that arrives before the driver's backend ever answered waits for it.

At boot dockerd and Orlop start together, and dockerd starts every `restart: always`
container at once: their Mounts reach Orlop while the network, the file server or the
cloud's endpoint may not answer yet. dockerd does not start such a container again when
its first Mount fails, so the container would stay down until someone starts it by hand.

So during the first `WINDOW` seconds after the daemon started, and only while the driver's
backend has never answered (orlop.ops.reachability), a Mount whose attach meets a backend
fault (unreachable, refused connection; not a user's error) tries again every `EVERY`
second for up to `FOR` seconds: under dockerd's 2 minutes for a Mount and the Docker
frontend's 100 s answer, so the answer is still a clear error if the backend never comes.
Once the backend has answered once, a fault is the backend's and fails at once, as always.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from orlop.ops.reachability import ever_answered, says

log = logging.getLogger(__name__)
T = TypeVar("T")

WINDOW = 120.0  # seconds after start during which Mounts wait for a backend that never answered
FOR = 90.0  # seconds one Mount retries, at most
EVERY = 1.0  # seconds between attempts


class BootWait:
    """`orlop serve` waits (see above); a VolumeService alone (tests, tools) does not."""

    def __init__(self, window: float = WINDOW, limit: float = FOR, every: float = EVERY) -> None:
        self.started = time.monotonic()
        self.window, self.limit, self.every = window, limit, every

    def may_retry(self, driver: str, error: BaseException, since: float) -> bool:
        now = time.monotonic()
        return (
            says(error) is False
            and not ever_answered(driver)
            and now - self.started < self.window
            and now - since + self.every <= self.limit
        )

    async def run(self, driver: str, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, again after a backend fault while the backend has not yet answered
        since start (see the module's docstring)."""
        since = time.monotonic()
        tries = 0
        while True:
            try:
                result = await attempt()
            except Exception as error:
                if not self.may_retry(driver, error, since):
                    if tries:
                        log.warning("%s: gave up after %d attempts: %s", what, tries + 1, error)
                    raise
                if not tries:
                    log.warning(
                        "%s: the backend of driver %s has not answered since start (%s): "
                        "trying again every %gs for up to %gs (boot order)",
                        what,
                        driver,
                        error,
                        self.every,
                        self.limit,
                    )
                tries += 1
                await asyncio.sleep(self.every)
                continue
            if tries:
                log.info("%s: the backend answered after %d attempts", what, tries + 1)
            return result
