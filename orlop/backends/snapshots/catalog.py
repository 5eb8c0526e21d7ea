"""The snapshots of one driver on this host, kept beside its volumes:

    <state>/snapshots/<name>/meta.json     what the snapshot is (volume, time, method, schedule)
    <state>/snapshots/<name>/data          a directory volume's tree (a read-only subvolume on
                                           btrfs), or a loopfile volume's image file
    <state>/snapshots/.part-<name>/        being made: removed at the next start
    <state>/snapshots/.trash-<name>/       being deleted: finished at the next start

A snapshot is made under `.part-<name>` and renamed into place once its data and meta.json
are on disk, so a name in the listing is always a whole snapshot; a kill at any step leaves
at most a `.part-`/`.trash-` directory, which the next start removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

from orlop.core.model import Conflict, NotFound, rfc3339, validate_name
from orlop.host import btrfs

PART = ".part-"
TRASH = ".trash-"


def remove_payload(path: str) -> None:
    """Delete a snapshot's or a volume's data: a btrfs subvolume, a tree or a file."""
    if not os.path.lexists(path):
        return
    if btrfs.is_subvolume(path):
        btrfs.delete(path)
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotCatalog:
    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def data(self, name: str) -> str:
        return os.path.join(self.root, name, "data")

    def cleanup(self) -> list[str]:
        """Remove what a crash left half-made or half-deleted; return the names removed."""
        removed = []
        for entry in sorted(os.listdir(self.root)):
            if entry.startswith((PART, TRASH)):
                self._remove_dir(os.path.join(self.root, entry))
                removed.append(entry)
        return removed

    def get(self, name: str) -> dict[str, Any]:
        """A snapshot's facts; NotFound says how to list the ones there are."""
        validate_name(name, "snapshot name")
        try:
            with open(os.path.join(self.path(name), "meta.json"), encoding="utf-8") as file:
                meta: dict[str, Any] = json.load(file)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(
                f"snapshot {name} does not exist: `orlop snapshot ls` lists the snapshots"
            ) from None
        return meta

    def list(self, volume: str | None = None) -> list[dict[str, Any]]:
        found = []
        for entry in os.listdir(self.root):
            if entry.startswith("."):
                continue
            with contextlib.suppress(NotFound, ValueError, OSError):
                meta = self.get(entry)
                if volume is None or meta.get("volume") == volume:
                    found.append(meta)
        return sorted(found, key=lambda s: (s.get("created_at", ""), s.get("name", "")))

    @contextlib.contextmanager
    def making(self, name: str, facts: dict[str, Any]) -> Iterator[str]:
        """Make snapshot `name`: yields the directory to put `data` in; on success writes
        meta.json and renames it into place, on failure removes it."""
        validate_name(name, "snapshot name")
        if os.path.lexists(self.path(name)):
            raise Conflict(f"a snapshot named {name} already exists: pick another name")
        part = os.path.join(self.root, f"{PART}{name}")
        self._remove_dir(part)  # a leftover of an earlier attempt
        os.mkdir(part, 0o700)
        try:
            yield part
            meta = {"id": name, "name": name, "created_at": rfc3339(), **facts}
            with open(os.path.join(part, "meta.json"), "w", encoding="utf-8") as file:
                json.dump(meta, file)
                file.flush()
                os.fsync(file.fileno())
            fsync_directory(part)
            os.rename(part, self.path(name))
            fsync_directory(self.root)
        except BaseException:
            with contextlib.suppress(Exception):
                self._remove_dir(part)
            raise

    def delete(self, name: str) -> dict[str, Any]:
        meta = self.get(name)
        trash = os.path.join(self.root, f"{TRASH}{name}")
        # Gone from the listing at once, and for good: a kill after the rename only leaves
        # trash for the next start.
        os.rename(self.path(name), trash)
        fsync_directory(self.root)
        self._remove_dir(trash)
        return meta

    @staticmethod
    def _remove_dir(directory: str) -> None:
        if not os.path.lexists(directory):
            return
        remove_payload(os.path.join(directory, "data"))
        shutil.rmtree(directory, ignore_errors=True)
