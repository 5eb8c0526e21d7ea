"""The cloud layer's own per-volume state on this host: small fsynced files.

    creating/<volume>   the idempotency token of a create in flight: after a crash before the
                        service kept the record, remove finds the disk by it and deletes it
    attached/<volume>   what this host attached (disk ID, instance, device name, paths, and
                        the fence generation it holds the disk under: fence.py), so Status
                        and device lookups never wait on the cloud; a file without a
                        generation (written before fencing) is read as before

Attachments are mirrored in memory; every write is fsynced and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import Any


class VolumeFiles:
    def __init__(self, root: str) -> None:
        self.root = root
        for sub in ("creating", "attached"):
            os.makedirs(os.path.join(root, sub), mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self.attached: dict[str, dict[str, Any]] = {}
        for name in os.listdir(os.path.join(root, "attached")):
            if not name.endswith(".tmp"):
                text = self._read("attached", name)
                with contextlib.suppress(ValueError):
                    self.attached[name] = json.loads(text or "{}")

    # create tokens ------------------------------------------------------------------------
    def token(self, volume: str) -> str | None:
        return self._read("creating", volume) or None

    def keep_token(self, volume: str, token: str) -> None:
        self._write("creating", volume, token)

    def drop_token(self, volume: str) -> None:
        self._delete("creating", volume)

    # attachments --------------------------------------------------------------------------
    def attachment(self, volume: str) -> dict[str, Any] | None:
        return self.attached.get(volume)

    def keep_attachment(self, volume: str, facts: dict[str, Any]) -> None:
        self._write("attached", volume, json.dumps(facts))
        with self._lock:
            self.attached[volume] = facts

    def drop_attachment(self, volume: str) -> None:
        with self._lock:
            self.attached.pop(volume, None)
        self._delete("attached", volume)

    # files --------------------------------------------------------------------------------
    def _path(self, sub: str, volume: str) -> str:
        return os.path.join(self.root, sub, volume)

    def _write(self, sub: str, volume: str, text: str) -> None:
        path = self._path(sub, volume)
        with open(f"{path}.tmp", "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(f"{path}.tmp", path)
        directory = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _read(self, sub: str, volume: str) -> str | None:
        try:
            with open(self._path(sub, volume), encoding="utf-8") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def _delete(self, sub: str, volume: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(sub, volume))
