"""Operations in flight, joined by a retry, and waited for at most a deadline.

Docker gives up on a plugin call (Create, Mount) long before a large mkfs, a clone or a
stalled disk's attach ends, and then asks again. The second call must not start a second
operation: `InFlight.run(key, start, timeout, what)` starts `start()` once per `key` and lets
every caller with the same key wait for that one operation. A caller waits at most `timeout`
seconds and then gets a clear error; the operation goes on (holding its volume's lock, so
nothing else touches the volume meanwhile) and the next caller with the same key joins it.

A cancelled caller stays a cancellation: when the last caller waiting is cancelled, the
operation is cancelled too and awaited (it undoes itself, see `VolumeRegistry.call`); one
that no caller waits for any more because they timed out is left to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from orlop.core.model import BackendError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Operation:
    future: asyncio.Future[Any]
    what: str
    waiting: int = 0


class InFlight:
    def __init__(self) -> None:
        self._operations: dict[Hashable, _Operation] = {}

    def running(self, key: Hashable) -> bool:
        return key in self._operations

    async def run(
        self,
        key: Hashable,
        start: Callable[[], Coroutine[Any, Any, T]],
        timeout: float | None,
        what: str,
    ) -> T:
        """The result of the operation `key`: the one in flight, else `start()`'s."""
        operation = self._operations.get(key)
        if operation is None:
            operation = _Operation(asyncio.ensure_future(start()), what)
            self._operations[key] = operation
            operation.future.add_done_callback(lambda done: self._landed(key, done))
        operation.waiting += 1
        try:
            result: T = await asyncio.wait_for(asyncio.shield(operation.future), timeout)
            return result
        except TimeoutError:
            raise BackendError(
                f"{what} did not finish within {timeout:g}s; it goes on in the background, "
                "and the same request again waits for it (it is never started twice)"
            ) from None
        except asyncio.CancelledError:
            if operation.waiting == 1 and not operation.future.done():
                operation.future.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait([operation.future])
            raise
        finally:
            operation.waiting -= 1

    def _landed(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        operation = self._operations.get(key)
        if operation is None or operation.future is not done:
            operation = None
        else:
            del self._operations[key]
        error = None if done.cancelled() else done.exception()  # retrieved, waited for or not
        if error is not None and operation is not None and not operation.waiting:
            log.error("%s failed after its callers stopped waiting: %s", operation.what, error)
