"""Progress of long operations (copies, backups, restores), for the CLI's progress bars.

The service starts a `Task` under an ID the client chose, and runs the backend call with
that task as the worker thread's current one; the backend reports bytes with `report()`
(without knowing who listens), and the admin API answers `progress` polls from the board.
A task is kept for a minute after it ends, so a client's last poll still finds it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
KEEP_FINISHED_SECONDS = 60.0

_current = threading.local()


@dataclass(slots=True)
class Task:
    id: str
    what: str
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def as_dict(self) -> dict[str, Any]:
        elapsed = (self.finished or time.monotonic()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate > 0 and self.total else None
        return {
            "id": self.id,
            "what": self.what,
            "done": self.done,
            "total": self.total,
            "elapsed": round(elapsed, 3),
            "rate": round(rate),
            "eta": round(remaining, 1) if remaining is not None else None,
            "finished": self.finished is not None,
        }


class ProgressBoard:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    @contextlib.contextmanager
    def task(self, task_id: str | None, what: str) -> Iterator[Task]:
        """A task for the duration of the block (a throw-away one when no ID was given)."""
        task = Task(task_id or "", what)
        with self._lock:
            now = time.monotonic()
            for old in [k for k, t in self._tasks.items() if _expired(t, now)]:
                del self._tasks[old]
            if task_id:
                self._tasks[task_id] = task
        try:
            yield task
        finally:
            task.finished = time.monotonic()


def _expired(task: Task, now: float) -> bool:
    return task.finished is not None and now - task.finished > KEEP_FINISHED_SECONDS


def reporting(task: Task, function: Callable[..., T], *args: Any) -> T:
    """Call `function(*args)` with `task` as this thread's current task (in a worker)."""
    _current.task = task
    try:
        return function(*args)
    finally:
        _current.task = None


def report(done: int, total: int) -> None:
    """Bytes done of total for the current thread's task, if it has one."""
    task: Task | None = getattr(_current, "task", None)
    if task is not None:
        task.done, task.total = done, max(total, done)
