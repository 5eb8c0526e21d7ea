"""A world over a provider's `CloudTestbed`: the same server, hosts and device presenter its
integration tests and `bench/bench_cloud.py` use (`open_*_testbed`), with a fault proxy in
front of every endpoint the driver calls.

Hosts are the testbed's own (an instance, a VM, an SDC, a Nova server on the server); their
driver settings are the testbed's with each proxied endpoint pointed at its fault proxy and the
run's short timeouts. `disks` reads the server through the testbed's `cloud_disks` (bypassing
Orlop); `bare_move` times the provider's own detach + attach calls (Orlop's cloud client for
that provider, straight to the server, no layer around it) including the wait for the device
on the second host, as a move needs it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from orlop.backends.cloud.api import LABEL_MANAGED, LABEL_NAMESPACE, DiskSpec
from orlop.backends.cloud.devices import find_device
from tests.chaos.worlds.base import COMMON_SETTINGS, Disk, FaultSet, Host
from tests.support.cloud.presenter import DevicePresenter
from tests.support.cloud.testbed import CloudHost, CloudTestbed
from tests.support.faults import FaultProxy
from tests.support.names import unique


def poll(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline, pause = time.monotonic() + timeout, 0.005
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"bare move: {what} did not happen within {timeout} s")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)


class TestbedWorld:
    kind: ClassVar[str]
    proxied: ClassVar[tuple[str, ...]]  # settings holding a URL the fault proxy fronts
    settings: ClassVar[dict[str, Any]] = {}  # the run's settings, over COMMON_SETTINGS

    def __init__(
        self,
        stack: contextlib.ExitStack,
        testbed: CloudTestbed,
        presenter: DevicePresenter,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.stack, self.testbed, self.presenter, self.tls = stack, testbed, presenter, tls
        self.create_options = dict(testbed.create_options)
        self.faults = FaultSet()
        stack.callback(self.faults.stop)
        self.namespace = ""
        self.direct: dict[str, CloudHost] = {}  # instance → the host as the testbed made it
        self.fronts: dict[str, str] = {}  # upstream URL → its fault proxy's URL

    def _front(self, upstream: str) -> str:
        if upstream not in self.fronts:
            proxy = self.faults.add(FaultProxy(upstream, self.kind, tls=self.tls))
            self.fronts[upstream] = proxy.url
        return self.fronts[upstream]

    def host(self, root: Path) -> Host:
        made = self.testbed.host()
        self.direct[made.instance] = made
        self.namespace = str(made.settings["namespace"])
        settings = {**made.settings, **COMMON_SETTINGS, **self.settings}
        for key in self.proxied:
            settings[key] = self._front(str(made.settings[key]))
        return Host(made.instance, settings)

    def _disks(self, volume: str | None) -> list[Disk]:
        found = self.testbed.cloud_disks(self.namespace)
        return [
            Disk(str(d["id"]), [str(i) for i in d["attached_to"]])
            for d in found
            if volume is None or d["volume"] == volume
        ]

    def disks(self, volume: str) -> list[Disk]:
        return self._disks(volume)

    def all_disks(self) -> list[Disk]:
        return self._disks(None)

    def bare_move(self, first: Host, second: Host) -> float:
        from tests.contracts.cloud import backend_for

        one = backend_for(self.direct[first.instance]).provider
        two = backend_for(self.direct[second.instance]).provider
        cloud, other = one.cloud, two.cloud
        me, them = cloud.identity(), other.identity()
        labels = {LABEL_MANAGED: "orlop-chaos", LABEL_NAMESPACE: self.namespace + "-bare"}
        options = one.options.validate(dict(self.create_options))
        spec = DiskSpec(unique("bare"), self.namespace + "-bare", labels, unique(), options)
        made = cloud.create_disk(spec, me)
        disk = poll(lambda: (d := cloud.get_disk(made.id)) and d.state == "ready" and d, "create")
        try:
            self._attach(cloud, disk, me)
            started = time.monotonic()
            self._detach(cloud, disk, me.instance)
            self._attach(other, disk, them)
            took = time.monotonic() - started
            self._detach(other, disk, them.instance)
            return took
        finally:
            cloud.delete_disk(disk)
            with contextlib.suppress(Exception):
                poll(lambda: cloud.get_disk(disk.id) is None, "delete", timeout=30)

    @staticmethod
    def _attach(cloud: Any, disk: Any, me: Any) -> None:
        cloud.attach_disk(disk, me, cloud.device_name(disk, me))

        def attached() -> Any:
            now = cloud.get_disk(disk.id)
            mine = now.attached_to(me.instance) if now is not None else None
            return mine if mine is not None and mine.state == "attached" else None

        mine = poll(attached, "attach")
        poll(lambda: find_device(cloud.device_paths(disk, mine)), "the device")

    @staticmethod
    def _detach(cloud: Any, disk: Any, instance: str) -> None:
        cloud.detach_disk(disk, instance)
        poll(lambda: not (d := cloud.get_disk(disk.id)) or not d.attached_to(instance), "detach")
