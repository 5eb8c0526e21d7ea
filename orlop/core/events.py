"""The events journal: what happened to which volume, for `orlop events` and the log.

An event is a fact the core decided or saw (created, mounted, lost, backup failed, …), never
a backend's detail: time (RFC 3339), kind, driver, volume, the operation ID of the request
that caused it (orlop.core.context), this host, a message for people and a few details (no
option values but redacted ones; the caller passes those).

Kept in memory (the last `max_events`) and, with a path, appended to a JSON-lines file by a
writer thread that fsyncs each batch (what came within BATCH_DELAY): `emit` never waits on
the disk, so a full or failing state disk cannot fail a Mount (the writer logs once and
drops events until writes succeed again). The file is bounded: past `max_events` lines or
`max_bytes` it becomes `<path>.1` (replacing the previous one) and a new file starts. At
start both are read back, oldest first; a line that does not parse (the torn last line of a
crash) is skipped.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime
import json
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from orlop.core import context
from orlop.core.model import InvalidOption, rfc3339

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
MAX_BYTES = 8 * 1024 * 1024
BATCH_DELAY = 0.5  # seconds the writer gathers events before it writes and fsyncs them
FOLLOW_QUEUE = 1000  # events a slow follower may fall behind before it is dropped

# The kinds of event, and what each says.
KINDS = frozenset(
    {
        "created",
        "removed",
        "trashed",  # removed into the trash: storage kept
        "mounted",
        "unmounted",
        "mount_failed",
        "detach_failed",
        "repaired",  # a dead network mount (FUSE client) found and mounted again
        "preempted",
        "lost",  # taken by another host: the mounts here are gone
        "resized",
        "snapshot_taken",
        "snapshot_deleted",
        "snapshot_restored",
        "snapshot_schedule_failed",
        "backup_done",
        "backup_failed",
        "backup_restored",
        "trash_restored",
        "trash_expired",
        "trash_purged",
        "adopted",  # found on the storage by discovery
        "vanished",  # gone from the storage, found by discovery
        "recovery_finished",
        "recovery_failed",
        "recovered",  # recovery finished or undid something of one volume
    }
)


def parse_time(text: str) -> float:
    """An RFC 3339 time (`2026-12-07T12:00:00Z`, or with an offset or fraction) as unix time;
    ValueError when it is not one."""
    moment = datetime.datetime.fromisoformat(text.strip().replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: end it with Z or an offset like +00:00")
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Event:
    time: str
    kind: str
    driver: str = ""
    volume: str = ""
    op: str = ""
    host: str = ""
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # order in this journal (times repeat within a second)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            time=str(data["time"]),
            kind=str(data["kind"]),
            driver=str(data.get("driver", "")),
            volume=str(data.get("volume", "")),
            op=str(data.get("op", "")),
            host=str(data.get("host", "")),
            message=str(data.get("message", "")),
            details=dict(data.get("details") or {}),
            seq=int(data.get("seq", 0)),
        )

    def at(self) -> float:
        return parse_time(self.time)


class EventJournal:
    def __init__(
        self,
        path: str | None = None,
        max_events: int = MAX_EVENTS,
        max_bytes: int = MAX_BYTES,
        host: str | None = None,
    ) -> None:
        self.path = path
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.host = host or socket.gethostname()
        self._events: deque[Event] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._queued = 0  # lines handed to the writer, and lines it is done with:
        self._settled = 0  # written, or dropped when writing failed
        self._wake = threading.Condition(self._lock)  # the writer waits on it
        self._done = threading.Condition(self._lock)  # flush() waits on it
        self._idle = False  # the writer waits for a first event (else it is gathering)
        self._closed = False
        self._hurry = False  # flush(): write what is pending now
        self._failing = False
        self._file_lines = 0
        self._file_bytes = 0
        self._followers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event | None]]] = set()
        self._writer: threading.Thread | None = None
        self._seq = 0
        self._start = b""
        if path:
            self._load(path)
            self._writer = threading.Thread(
                target=self._write_forever, name="orlop-events", daemon=True
            )
            self._writer.start()

    # reading back -----------------------------------------------------------------------
    def _load(self, path: str) -> None:
        for name in (f"{path}.1", path):
            try:
                with open(name, "rb") as file:
                    data = file.read()
            except FileNotFoundError:
                continue
            except OSError as error:
                log.warning("events journal: cannot read %s: %s", name, error)
                continue
            if name == path and data and not data.endswith(b"\n"):
                data = self._cut_torn_tail(path, data)
            lines = data.split(b"\n")
            if name == path:
                self._file_bytes = len(data)
                self._file_lines = sum(1 for line in lines if line.strip())
            for line in lines:
                event = _parse(line)
                if event is not None:
                    self._events.append(event)
        if self._events:
            self._seq = max(event.seq for event in self._events)

    def _cut_torn_tail(self, path: str, data: bytes) -> bytes:
        """A crash tore the last line: cut it, so the next line starts on its own."""
        whole = data[: data.rfind(b"\n") + 1]
        try:
            os.truncate(path, len(whole))
        except OSError as error:
            log.warning("events journal: cannot cut the torn end of %s: %s", path, error)
            self._start = b"\n"  # the next write begins with a new line instead
            return data
        return whole

    # writing ----------------------------------------------------------------------------
    def emit(
        self,
        kind: str,
        message: str,
        driver: str = "",
        volume: str = "",
        level: int = logging.INFO,
        **details: Any,
    ) -> Event:
        """Record an event now (and log its message): memory at once, the disk later.
        Driver and volume default to those of the operation open now. From any thread."""
        now = context.current()
        with self._lock:
            self._seq += 1
            event = Event(
                time=rfc3339(),
                kind=kind,
                driver=driver or (now.driver if now else ""),
                volume=volume or (now.volume if now else ""),
                op=now.op if now else "",
                host=self.host,
                message=message,
                details={k: v for k, v in details.items() if v is not None},
                seq=self._seq,
            )
            self._events.append(event)
            if self.path and not self._closed:
                self._pending.append(event)  # serialised by the writer, off this thread
                self._queued += 1
                if self._idle:  # not while it gathers: a wake-up per event costs a switch
                    self._wake.notify()
            followers = list(self._followers)
        log.log(
            level,
            "event %s: %s",
            kind,
            message,
            extra={"volume": event.volume, "driver": event.driver} if event.volume else None,
        )
        for loop, queue in followers:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it went away
                loop.call_soon_threadsafe(_offer, queue, event)
        return event

    def _write_forever(self) -> None:
        while True:
            with self._lock:
                self._idle = True
                while not self._pending and not self._closed:
                    self._wake.wait()
                self._idle = False
                # Gather a burst into one write and one fsync: the state disk is the store's
                # too, and an fsync here per event would slow its fsyncs down.
                self._wake.wait_for(lambda: self._closed or self._hurry, BATCH_DELAY)
                self._hurry = False
                batch, self._pending = self._pending, []
                closed = self._closed
            if batch:
                self._write([json.dumps(e.as_dict(), sort_keys=True, default=str) for e in batch])
                with self._lock:
                    self._settled += len(batch)
                    self._done.notify_all()
            if closed and not batch:
                return

    def _write(self, batch: builtins.list[str]) -> None:
        assert self.path is not None
        data = self._start + "".join(line + "\n" for line in batch).encode()
        try:
            if self._file_lines and (
                self._file_lines + len(batch) > self.max_events
                or self._file_bytes + len(data) > self.max_bytes
            ):
                os.replace(self.path, f"{self.path}.1")
                self._file_lines = self._file_bytes = 0
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:
            if not self._failing:
                log.error(
                    "events journal: cannot write %s (%s): events are kept in memory only "
                    "until writing works again",
                    self.path,
                    error,
                )
            self._failing = True
            return
        if self._failing:
            log.warning("events journal: writing %s works again", self.path)
            self._failing = False
        self._file_lines += len(batch)
        self._file_bytes += len(data)
        self._start = b""

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (up to `timeout`) until what was emitted is on disk; for close and tests."""
        if self._writer is None:
            return
        with self._lock:
            target = self._queued
            self._hurry = True
            self._wake.notify()
            self._done.wait_for(lambda: self._settled >= target, timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
            followers = list(self._followers)
        if self._writer is not None:
            self._writer.join(5)
        for loop, queue in followers:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_offer, queue, None)

    # reading ----------------------------------------------------------------------------
    def list(self, since: float | None = None) -> builtins.list[Event]:
        """The events kept, oldest first; from `since` (unix time, to the second) on."""
        with self._lock:
            events = builtins.list(self._events)
        if since is None:
            return events
        floor = int(since)
        return [event for event in events if _at(event) >= floor]

    @contextlib.contextmanager
    def follow(self) -> Iterator[asyncio.Queue[Event | None]]:
        """A queue of the events emitted from now on (None: the journal closed, or the
        follower fell more than FOLLOW_QUEUE behind); on the running loop."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(FOLLOW_QUEUE)
        follower = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._followers.add(follower)
        try:
            yield queue
        finally:
            with self._lock:
                self._followers.discard(follower)


def _offer(queue: asyncio.Queue[Event | None], event: Event | None) -> None:
    try:
        queue.put_nowait(event)
    except asyncio.QueueFull:
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait(None)  # too far behind: it ends


def _at(event: Event) -> float:
    try:
        return event.at()
    except ValueError:
        return 0.0


def _parse(line: bytes) -> Event | None:
    if not line.strip():
        return None
    try:
        data = json.loads(line)
        return Event.from_dict(data) if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        return None  # torn (a crash while writing) or not ours: skipped


_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])\s*\Z")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: a duration back from now (`90s`, `10m`, `2h`, `7d`) or an RFC 3339 time, as
    unix time; InvalidOption saying what is allowed otherwise."""
    moment = time.time() if now is None else now
    match = _DURATION.match(text)
    if match:
        return moment - float(match.group(1)) * _SECONDS[match.group(2)]
    try:
        return parse_time(text)
    except ValueError:
        raise InvalidOption(
            f"invalid since {text!r}: give a duration (90s, 10m, 2h, 7d) or an RFC 3339 time "
            "(2026-12-07T12:00:00Z)"
        ) from None
