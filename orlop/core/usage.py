"""Size, used and free bytes of volumes, for Status and `orlop volume ls`.

Usage is a hint, never a fault of the volume: a backend that is slow or cannot tell leaves
the last known value in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from orlop.core.model import OrlopError, Volume
from orlop.core.registry import VolumeRegistry, ref

log = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0  # quiet time before usage is measured after a create or unmount


class UsageMeter:
    def __init__(self, registry: VolumeRegistry) -> None:
        self.registry = registry
        # Volumes whose last measurement has not come back (a hung filesystem): not asked
        # again until it does, or each refresh would strand one more worker thread.
        self._measuring: set[tuple[str, str]] = set()

    async def refresh(self, driver_name: str, name: str, timeout: float = 10.0) -> Volume:
        """Ask the backend for size/used/free now, and remember it for Status."""
        registry = self.registry
        driver = registry.driver(driver_name)
        async with registry.lock(driver_name, name):
            volume = registry.get(driver_name, name)
            key = (driver_name, name)
            if key in self._measuring:
                return volume
            self._measuring.add(key)
            measuring = asyncio.ensure_future(registry.call(driver.backend.usage, ref(volume)))
            measuring.add_done_callback(_retrieve)
            measuring.add_done_callback(lambda _: self._measuring.discard(key))
            try:
                # Shielded: on timeout the answer is abandoned at once, not waited for (a
                # hung network filesystem must not hold the lock).
                usage = await asyncio.wait_for(asyncio.shield(measuring), timeout)
            except (TimeoutError, OrlopError, OSError) as error:
                log.debug("usage of %s: %s", name, error or "timed out")
                return volume
            if usage is not None and usage != volume.usage:  # None: unknown now, keep the last
                volume.usage = usage
                registry.store.set_usage(volume)
                registry.changed(driver_name)
            return volume

    def refresh_later(self, volume: Volume) -> None:
        """Refresh usage soon, in the background, once the caller has released the lock.

        After a short pause: Docker's calls come in bursts (create, Get, Mount; Unmount, Get,
        Remove), and a measurement in the middle of one holds the volume's lock and a worker
        thread while the next call waits."""

        async def measure() -> None:
            await asyncio.sleep(SETTLE_SECONDS)
            with contextlib.suppress(OrlopError):  # removed meanwhile
                await self.refresh(volume.driver, volume.name)

        self.registry.run_later(measure())

    async def refresh_all(self, interval: float) -> None:
        """Refresh every volume's usage for Status, one at a time, every `interval` seconds."""
        while True:
            await asyncio.sleep(interval)
            for driver, volumes in self.registry.volumes.items():
                for name in list(volumes):
                    with contextlib.suppress(OrlopError):
                        await self.refresh(driver, name)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Take an abandoned measurement's error, so asyncio does not report it as lost."""
    if not task.cancelled():
        task.exception()
