"""The clouds a chaos run plays against: one provider's test server, the fault proxy in front
of it, and the device presenter that shows attached disks as real loop devices.

A `World` makes hosts (each an instance on the server with its own by-id directory and the
driver settings an orlop.yaml would hold), answers from the server itself (bypassing Orlop)
which instances hold a volume's disk, and gives the loop device behind a disk (for fsck).
Everything is started into an `ExitStack`, so the same code serves pytest and `scripts/chaos`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.support.cloud.presenter import DevicePresenter
from tests.support.faults import Fault, FaultProxy, Injected

# Short timeouts and a fast discovery pass: moves settle in seconds on a loaded machine.
COMMON_SETTINGS: dict[str, Any] = {
    "attach_timeout": 15,
    "detach_timeout": 15,
    "create_timeout": 15,
    "api_retry_base": 0.01,
    "api_retry_cap": 0.1,
    "api_max_attempts": 6,
    "poll_max": 0.2,
    "discover_interval": 0.5,
}


@dataclass
class Host:
    """One machine: the instance the cloud knows, and its driver settings."""

    instance: str
    settings: dict[str, Any]


@dataclass
class Disk:
    id: str
    holders: list[str]  # instances the server shows it attached (or attaching/detaching) to


class Faults(Protocol):
    """What a run asks of the fault proxy (or proxies) in front of the server's API."""

    @property
    def injected(self) -> list[Injected]: ...

    def schedule(
        self, seed: int, rate: float, faults: Sequence[Fault] = ..., delay: float = ...
    ) -> None: ...

    def calm(self) -> None: ...


class FaultSet:
    """Several fault proxies (one per endpoint a driver calls: Cinder's block storage and
    compute) commanded as one; each draws from its own generator of the same seed."""

    def __init__(self) -> None:
        self.proxies: list[FaultProxy] = []

    def add(self, proxy: FaultProxy) -> FaultProxy:
        self.proxies.append(proxy)
        return proxy

    @property
    def injected(self) -> list[Injected]:
        met = [i for proxy in self.proxies for i in proxy.injected]
        return sorted(met, key=lambda i: i.at)

    def schedule(
        self, seed: int, rate: float, faults: Sequence[Fault] = tuple(Fault), delay: float = 1.0
    ) -> None:
        for index, proxy in enumerate(self.proxies):
            proxy.schedule(seed + index, rate, faults, delay=delay)

    def calm(self) -> None:
        for proxy in self.proxies:
            proxy.calm()

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()


class World(Protocol):
    kind: str
    faults: Faults
    presenter: DevicePresenter
    create_options: dict[str, str]

    def host(self, root: Path) -> Host:
        """A new instance on the server, its by-id directory under `root`."""

    def disks(self, volume: str) -> list[Disk]:
        """The server's disks of this namespace named `volume` (for invariants); a disk's
        `id` is the presenter's key for it."""

    def all_disks(self) -> list[Disk]:
        """Every disk of this namespace (for leak checks)."""

    def bare_move(self, first: Host, second: Host) -> float:
        """Seconds the server itself takes to detach a disk from `first` and attach it to
        `second` (no Orlop): the provider's own detach + attach time."""
