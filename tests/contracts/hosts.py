"""Shared-volume conformance: a global backend's volume seen from two hosts.

* two hosts create the same new volume at the same moment (a Swarm service starting on
  two nodes): both get it, one volume, and neither's Create undoes the other's;
* a host adopts a volume another host made with the same options or fewer (discovery
  records the volume as it is), and a different size is refused.

Subclass `SharedVolumeConformance`, set `create_options` (a small volume), `bigger` (the
same with another size), provide the `new_host` fixture (as in keep.py) and, where the
storage's test server can widen the window two racing hosts have, `slow_storage()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from orlop.core.model import Conflict, Volume
from tests.contracts.keep import NewHost
from tests.support.harness import Harness
from tests.support.names import unique
from tests.support.race import race


class SharedVolumeConformance:
    create_options: ClassVar[dict[str, str]] = {}
    bigger: ClassVar[dict[str, str]] = {}
    driver_defaults: ClassVar[dict[str, str]] = {}  # as in keep.py

    @pytest.fixture
    def new_host(self) -> NewHost:  # pragma: no cover - overridden
        raise NotImplementedError("a shared-volume subclass provides the new_host fixture")

    def slow_storage(self) -> contextlib.AbstractContextManager[None]:
        """While inside, the storage answers slowly (both racing hosts look before either
        makes); by default nothing changes."""
        return contextlib.nullcontext()

    @pytest.fixture
    def shared_hosts(self, new_host: NewHost, tmp_path: Path) -> Iterator[Callable[[], Harness]]:
        driver, made = unique("shared"), []

        def host() -> Harness:
            store = str(tmp_path / f"shared{len(made)}.db")
            harness = Harness(new_host(), driver, store, dict(self.driver_defaults))
            made.append(harness)
            return harness

        try:
            yield host
        finally:
            for harness in made:
                for volume in harness.service.list(driver):
                    for mount_id in list(volume.mount_ids):
                        harness.unmount(volume.name, mount_id)
                harness.close()

    def test_two_hosts_creating_one_volume_at_once_both_get_it(
        self, shared_hosts: Callable[[], Harness]
    ) -> None:
        a, b = shared_hosts(), shared_hosts()
        name, options = unique("both"), self.create_options
        with self.slow_storage():
            made = race(lambda: a.create(name, **options), lambda: b.create(name, **options))
        assert all(isinstance(volume, Volume) for volume in made), made
        path_a, path_b = Path(a.mount(name, "ca")), Path(b.mount(name, "cb"))
        (path_a / "from-a").write_text("a")
        assert (path_b / "from-a").read_text() == "a"  # one volume, both hosts
        a.unmount(name, "ca")
        b.unmount(name, "cb")
        a.remove(name)
        b.remove(name)

    def test_adopted_with_the_options_it_was_made_with(
        self, shared_hosts: Callable[[], Harness]
    ) -> None:
        a, b = shared_hosts(), shared_hosts()
        name = unique("adopt")
        a.create(name, **self.create_options)
        b.run(b.service.discover(b.driver))
        assert b.names() == [name]
        assert b.create(name, **self.create_options).name == name  # the same options
        assert b.create(name).name == name  # fewer
        with pytest.raises(Conflict, match="different options"):
            b.create(name, **self.bigger)
        a.remove(name)
