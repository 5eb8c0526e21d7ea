"""The block layer's per-volume intent journal: one small JSON file per volume.

The service records a volume's state (attaching, detaching, …); inside one attach the
block layer takes several steps, and some of them must be known after a crash:

* `formatting` — mkfs was about to run. A format that never finished holds no data, so the
  next attach wipes the device and formats again instead of presenting a half-made filesystem.
* `formatted` — mkfs finished. From then on a device without a filesystem is an error, never
  a reason to format (that would destroy data).
* `resizing` — a grow to this many bytes was started; the next attach finishes it.
* `usage` — size/used/free measured at the last unmount, for Status while detached.

Each write goes to a temporary file, is fsynced, and renamed over the old one.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any


class Journal:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, f"{name}.json")

    def get(self, name: str) -> dict[str, Any]:
        try:
            with open(self._path(name), encoding="utf-8") as file:
                entry = json.load(file)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # An unreadable entry says nothing: detection still guards the data (blkid, and a
            # format only of a device that reads back blank).
            return {}
        return entry if isinstance(entry, dict) else {}

    def update(self, name: str, **fields: Any) -> dict[str, Any]:
        """Set `fields` (None deletes a field) and make the entry durable before returning."""
        entry = self.get(name)
        for key, value in fields.items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
        self._write(name, entry)
        return entry

    def reset(self, name: str) -> None:
        self._write(name, {})

    def drop(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name))

    def _write(self, name: str, entry: dict[str, Any]) -> None:
        path = self._path(name)
        temporary = f"{path}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(entry, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
