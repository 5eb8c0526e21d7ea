"""An in-memory backend for unit tests of the service: no OS, calls counted, faults on demand."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, ClassVar

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef
from orlop.core.model import BackendError, Usage
from orlop.core.options import Option, OptionSet, canonical_size


class MemoryBackend:
    kind: ClassVar[str] = "memory"
    options: ClassVar[OptionSet] = OptionSet(
        [Option("size", canonical_size), Option("label"), Option("password", secret=True)]
    )
    capabilities = Capabilities()

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.volumes: dict[str, dict[str, Any]] = {}
        self.attached: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, str] = {}  # method → error message, raised once
        self.gate: dict[str, threading.Event] = {}  # method → wait for this event first

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if method in self.gate:
            self.gate[method].wait(10)
        if method in self.fail:
            raise BackendError(self.fail.pop(method))

    def validate(self, name: str, options: dict[str, str]) -> None:
        pass

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        self._enter("create")
        self.volumes.setdefault(volume.name, {"files": {}})
        return {"serial": f"mem-{volume.name}"}

    def remove(self, volume: VolumeRef) -> None:
        self._enter("remove")
        self.volumes.pop(volume.name, None)

    def mountpoint(self, volume: VolumeRef) -> str:
        return f"/memory/{self.context.driver}/{volume.name}"

    def attach(self, volume: VolumeRef) -> str:
        self._enter("attach")
        self.attached.add(volume.name)
        return self.mountpoint(volume)

    def detach(self, volume: VolumeRef) -> None:
        self._enter("detach")
        self.attached.discard(volume.name)

    def is_attached(self, volume: VolumeRef, mounted: set[str]) -> bool:
        return volume.name in self.attached

    def usage(self, volume: VolumeRef) -> Usage | None:
        self._enter("usage")
        return Usage(used=0, size=int(volume.options.get("size", "0")) or None)

    @classmethod
    def host_checks(cls) -> list[Check]:
        return []
