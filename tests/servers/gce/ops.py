"""Zone and global operations of the GCE test server: PENDING → RUNNING → DONE on a clock.

Each operation carries an effect run when it turns DONE (the disk becomes READY, the
attachment exists, …); an effect that raises `ApiError` ends the operation in error, as
Compute Engine reports a refusal found after the request was accepted.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Run under the server lock when the operation turns DONE; may return a follow-up to run
# outside the lock before DONE is reported (showing a device through the presenter).
Effect = Callable[[], Callable[[], None] | None]


class ApiError(Exception):
    """A refusal in Compute Engine's words: HTTP status, reason, message, and the operation
    error code it has when an operation meets it."""

    def __init__(self, status: int, reason: str, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.code = status, reason, message, code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            }
        }


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())


@dataclass
class Operation:
    resource: dict[str, Any]
    effect: Effect
    done: threading.Event = field(default_factory=threading.Event)


class Clock:
    """Steps operations along after `delay` seconds per step, in a thread of its own."""

    def __init__(self, lock: threading.RLock, delay: float) -> None:
        self.lock = lock
        self.delay = delay
        self.wait_longest = 30.0  # zoneOperations.wait answers by then, DONE or not
        self.changed = threading.Condition(lock)
        self.operations: dict[str, Operation] = {}  # by name
        self._queue: list[tuple[float, int, str, str]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._ids = itertools.count(7000000000000000000)
        self.thread = threading.Thread(target=self._run, daemon=True, name="gce-operations")
        self.thread.start()

    def start(
        self,
        kind: str,
        target: str,
        base: str,
        scope: str,
        effect: Effect,
    ) -> dict[str, Any]:
        """A new operation (call with the lock held); its resource as first answered."""
        name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}"
        resource: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "operationType": kind,
            "targetLink": target,
            "targetId": str(abs(hash(target)) % 10**18),
            "status": "PENDING",
            "user": "orlop-tests@example.iam.gserviceaccount.com",
            "progress": 0,
            "insertTime": now(),
            "selfLink": f"{base}/{scope}/operations/{name}",
        }
        if "/zones/" in scope:
            resource["zone"] = f"{base}/{scope}"
        self.operations[name] = Operation(resource, effect)
        self._schedule(self.delay, name, "RUNNING")
        return dict(resource)

    def _schedule(self, after: float, name: str, status: str) -> None:
        with self._wake:
            heapq.heappush(self._queue, (time.monotonic() + after, next(self._order), name, status))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                _, _, name, status = heapq.heappop(self._queue)
            self._step(name, status)

    def _step(self, name: str, status: str) -> None:
        operation = self.operations[name]
        if status == "RUNNING":
            with self.lock:
                operation.resource.update(status="RUNNING", startTime=now(), progress=50)
                self.changed.notify_all()
            self._schedule(self.delay, name, "DONE")
            return
        error: ApiError | None = None
        try:
            with self.lock:
                follow_up = operation.effect()
            if follow_up is not None:
                follow_up()
        except ApiError as refused:
            error = refused
        with self.lock:
            operation.resource.update(status="DONE", endTime=now(), progress=100)
            if error is not None:
                operation.resource["error"] = {
                    "errors": [{"code": error.code or "INVALID_USAGE", "message": error.message}]
                }
                operation.resource["httpErrorStatusCode"] = error.status
                operation.resource["httpErrorMessage"] = error.reason.upper()
            operation.done.set()
            self.changed.notify_all()

    def get(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.operations:
                raise ApiError(404, "notFound", f"The resource 'operations/{name}' was not found")
            return dict(self.operations[name].resource)

    def wait(self, name: str) -> dict[str, Any]:
        """zoneOperations.wait: answer once DONE, or after `wait_longest` seconds regardless."""
        self.get(name)
        self.operations[name].done.wait(self.wait_longest)
        return self.get(name)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self.thread.join(timeout=5)
