"""Node state in SQLite (WAL): volumes, Docker's mount IDs, and each volume's lifecycle state.

The store is the record of intent: the service writes the state a volume is about to enter
*before* it asks the backend to act, so that after a crash `recover()` knows what was under
way. Every method is one transaction; the daemon calls them from its event-loop thread only.

Durability: every commit survives a crash of the daemon (WAL: a commit is in the OS before
it returns). Commits also survive power loss (synchronous=FULL: an fsync each) unless made
with `durable=False`, which mount bookkeeping uses: after a power loss or kernel crash every
mount and every container is gone whatever the store says, so the fsync buys nothing there,
and it is most of the time a Mount or Unmount takes. The next durable commit syncs them too.
A create is not fsynced on Docker's path either: its commits are crash-safe at once, and
`sync_soon()` has a background thread fsync the WAL a moment after Docker is answered, while
dockerd fsyncs its own record of the new volume. A power loss in that moment can lose both
records together; Orlop never holds a record without its storage.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from orlop.core.model import State, StateFull, Usage, Volume, rfc3339

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    driver      TEXT NOT NULL,
    name        TEXT NOT NULL,
    backend     TEXT NOT NULL,
    options     TEXT NOT NULL,
    record      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    state       TEXT NOT NULL,
    fault       TEXT NOT NULL DEFAULT '',
    usage       TEXT,
    PRIMARY KEY (driver, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mounts (
    driver      TEXT NOT NULL,
    name        TEXT NOT NULL,
    mount_id    TEXT NOT NULL,
    mounted_at  TEXT NOT NULL,
    PRIMARY KEY (driver, name, mount_id),
    FOREIGN KEY (driver, name) REFERENCES volumes (driver, name) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trash (
    driver      TEXT NOT NULL,
    name        TEXT NOT NULL,
    removed_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (driver, name),
    FOREIGN KEY (driver, name) REFERENCES volumes (driver, name) ON DELETE CASCADE
) WITHOUT ROWID;
"""


log = logging.getLogger(__name__)


class _WalFlusher(threading.Thread):
    """fsyncs the WAL file soon after it is asked, off the event loop; requests coalesce."""

    def __init__(self, wal_path: str) -> None:
        super().__init__(name="orlop-wal-flush", daemon=True)
        self.wal_path = wal_path
        self.flushes = 0
        self._wanted = threading.Event()
        self._stopping = False

    def request(self) -> None:
        self._wanted.set()

    def run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            self.flush()
            if self._stopping:
                return

    def flush(self) -> None:
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed and gone: the database file itself was synced
        try:
            os.fsync(fd)  # any descriptor of the file flushes all of its data
            self.flushes += 1
        except OSError as error:
            log.error("fsync of %s failed: %s", self.wal_path, error)
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._stopping = True
        self._wanted.set()
        self.join(timeout=10)


class Store:
    """SQLite-backed node state."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed intent survives power loss, not just a daemon crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._durable = True
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{path} was written by a newer Orlop (schema {version} > {SCHEMA_VERSION})"
            )
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._flusher: _WalFlusher | None = None
        if path != ":memory:":
            self._flusher = _WalFlusher(f"{path}-wal")
            self._flusher.start()

    def sync_soon(self) -> None:
        """Make the commits so far power-loss safe within moments, without waiting here."""
        if self._flusher is not None:
            self._flusher.request()

    @property
    def background_flushes(self) -> int:
        return self._flusher.flushes if self._flusher is not None else 0

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.stop()
        self._db.close()

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        if durable != self._durable:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")  # may fail too (a full disk): then roll back
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as error:
            if "full" not in str(error):
                raise
            where = os.path.dirname(os.path.abspath(self.path))
            raise StateFull(
                f"Orlop's state disk is full ({where}: {error}): nothing was recorded or "
                "changed; free space there and repeat the request"
            ) from error

    # reads ------------------------------------------------------------------------------
    def load(self) -> list[Volume]:
        """Every volume with its mount IDs, whatever its state."""
        mount_ids: dict[tuple[str, str], set[str]] = {}
        for driver, name, mount_id in self._db.execute("SELECT driver, name, mount_id FROM mounts"):
            mount_ids.setdefault((driver, name), set()).add(mount_id)
        volumes = []
        for row in self._db.execute(
            "SELECT driver, name, backend, options, record, created_at, state, fault, usage "
            "FROM volumes"
        ):
            driver, name, backend, options, record, created_at, state, fault, usage = row
            volumes.append(
                Volume(
                    driver=driver,
                    name=name,
                    backend=backend,
                    options=json.loads(options),
                    record=json.loads(record),
                    created_at=created_at,
                    state=State(state),
                    mount_ids=mount_ids.get((driver, name), set()),
                    fault=fault,
                    usage=Usage(**json.loads(usage)) if usage else None,
                )
            )
        return volumes

    def trash_rows(self) -> list[tuple[str, str, float, float]]:
        """(driver, name, removed_at, expires_at) of every volume in the trash."""
        return list(self._db.execute("SELECT driver, name, removed_at, expires_at FROM trash"))

    # writes -----------------------------------------------------------------------------
    def insert(self, volume: Volume, durable: bool = True) -> None:
        with self._transaction(durable) as db:
            db.execute(
                "INSERT OR REPLACE INTO volumes"
                " (driver, name, backend, options, record, created_at, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    volume.driver,
                    volume.name,
                    volume.backend,
                    json.dumps(volume.options, sort_keys=True),
                    json.dumps(volume.record, sort_keys=True),
                    volume.created_at,
                    volume.state.value,
                ),
            )

    def update(
        self,
        volume: Volume,
        *,
        add_mount: str | None = None,
        drop_mount: str | None = None,
        drop_all_mounts: bool = False,
        durable: bool = True,
    ) -> None:
        """Write the volume's state, record and fault, and add or drop one mount ID (or drop
        them all), atomically.

        `durable=False`: survives a daemon crash, not a power loss (see the module doc)."""
        with self._transaction(durable) as db:
            db.execute(
                "UPDATE volumes SET state = ?, record = ?, fault = ?, options = ? "
                "WHERE driver = ? AND name = ?",
                (
                    volume.state.value,
                    json.dumps(volume.record, sort_keys=True),
                    volume.fault,
                    json.dumps(volume.options, sort_keys=True),
                    volume.driver,
                    volume.name,
                ),
            )
            if add_mount is not None:
                db.execute(
                    "INSERT OR IGNORE INTO mounts (driver, name, mount_id, mounted_at) "
                    "VALUES (?, ?, ?, ?)",
                    (volume.driver, volume.name, add_mount, rfc3339()),
                )
            if drop_mount is not None:
                db.execute(
                    "DELETE FROM mounts WHERE driver = ? AND name = ? AND mount_id = ?",
                    (volume.driver, volume.name, drop_mount),
                )
            if drop_all_mounts:
                db.execute(
                    "DELETE FROM mounts WHERE driver = ? AND name = ?",
                    (volume.driver, volume.name),
                )

    def set_usage(self, volume: Volume) -> None:
        """Remember the last usage measured; a hint, measured again: not fsynced."""
        usage = json.dumps(volume.usage.as_dict()) if volume.usage else None
        with self._transaction(durable=False) as db:
            db.execute(
                "UPDATE volumes SET usage = ? WHERE driver = ? AND name = ?",
                (usage, volume.driver, volume.name),
            )

    def delete(self, driver: str, name: str, durable: bool = True) -> None:
        """Forget a volume. `durable=False` is safe after a durable REMOVING: if a power loss
        undoes the delete, recover() finds REMOVING and finishes the removal again."""
        with self._transaction(durable) as db:
            db.execute("DELETE FROM volumes WHERE driver = ? AND name = ?", (driver, name))

    def trash_insert(self, volume: Volume, removed_at: float, expires_at: float) -> None:
        """Record `volume` TRASHED with its expiry, in one durable commit."""
        with self._transaction() as db:
            db.execute(
                "UPDATE volumes SET state = ? WHERE driver = ? AND name = ?",
                (volume.state.value, volume.driver, volume.name),
            )
            db.execute(
                "INSERT OR REPLACE INTO trash (driver, name, removed_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (volume.driver, volume.name, removed_at, expires_at),
            )

    def trash_delete(self, driver: str, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM trash WHERE driver = ? AND name = ?", (driver, name))
