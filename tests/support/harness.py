"""Drive a VolumeService synchronously in tests: one event loop, one store, real backends."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from orlop.backends.base import Backend
from orlop.core.model import Volume
from orlop.core.service import Driver, VolumeService
from orlop.core.store import Store

T = TypeVar("T")


class Harness:
    def __init__(
        self,
        backend: Backend,
        driver: str,
        store_path: str = ":memory:",
        defaults: dict[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.driver = driver
        self.store_path = store_path
        self.defaults = defaults or {}
        self.loop = asyncio.new_event_loop()
        self.store = Store(store_path)
        self.service = VolumeService(self.store, [Driver(driver, backend, self.defaults)])

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def create(self, name: str, **options: str) -> Volume:
        return self.run(self.service.create(self.driver, name, options))

    def remove(self, name: str) -> None:
        self.run(self.service.remove(self.driver, name))

    def mount(self, name: str, mount_id: str = "m1") -> str:
        return self.run(self.service.mount(self.driver, name, mount_id))

    def unmount(self, name: str, mount_id: str = "m1") -> None:
        self.run(self.service.unmount(self.driver, name, mount_id))

    def get(self, name: str) -> Volume:
        return self.service.get(self.driver, name)

    def names(self) -> list[str]:
        return sorted(v.name for v in self.service.list(self.driver))

    def restart(self, backend: Backend | None = None) -> Harness:
        """A new service over the same store file, as after a daemon restart; runs recovery."""
        assert self.store_path != ":memory:", "restart needs a store file"
        self.close()
        again = Harness(backend or self.backend, self.driver, self.store_path, self.defaults)
        again.run(again.service.recover())
        return again

    def close(self) -> None:
        pending = list(self.service.registry.background)
        self.service.close()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.store.close()
        self.loop.close()
