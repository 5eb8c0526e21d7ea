"""keep_on_remove conformance: every backend that has the option registers here.

`docker volume rm` of a volume with keep_on_remove=true keeps its data in the storage
system, and the volume is no longer Orlop's: no host's discovery takes it in again, not
the host that removed it, not one that never knew it (else the next `docker volume rm`
or `docker volume prune` there deletes what the user asked to keep), and a host that
knew it before does not delete it either.

Subclass `KeepOnRemoveConformance`, set `keep_options` (a small volume with
keep_on_remove=true) and `driver_defaults`, and provide the `new_host` fixture (a factory:
each call is the backend of another host over the same storage, with its own state
directory, built with `driver_defaults`), and `still_stored` / `delete_kept` for the
storage itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from orlop.backends.base import Backend
from orlop.core.model import Volume
from tests.support.harness import Harness
from tests.support.names import unique

NewHost = Callable[[], Backend]


class KeepOnRemoveConformance:
    keep_options: ClassVar[dict[str, str]] = {}
    driver_defaults: ClassVar[dict[str, str]] = {}  # the driver's options, as in orlop.yaml

    @pytest.fixture
    def new_host(self) -> NewHost:  # pragma: no cover - overridden
        raise NotImplementedError("a keep_on_remove subclass provides the new_host fixture")

    def still_stored(self, backend: Backend, volume: Volume) -> bool:  # pragma: no cover
        """Does the storage system still hold the kept volume's data?"""
        raise NotImplementedError

    def delete_kept(self, backend: Backend, volume: Volume) -> None:  # pragma: no cover
        """Delete the kept volume behind Orlop (the test's cleanup)."""
        raise NotImplementedError

    @pytest.fixture
    def keep_hosts(self, new_host: NewHost, tmp_path: Path) -> Iterator[Callable[[], Harness]]:
        driver, made = unique("keep"), []

        def host() -> Harness:
            store = str(tmp_path / f"host{len(made)}.db")
            harness = Harness(new_host(), driver, store, dict(self.driver_defaults))
            made.append(harness)
            return harness

        try:
            yield host
        finally:
            for harness in made:
                harness.close()

    def test_kept_volume_is_never_discovered_again(self, keep_hosts: Callable[[], Harness]) -> None:
        a, b = keep_hosts(), keep_hosts()
        name = unique("kept")
        volume = a.create(name, **self.keep_options)
        try:
            assert name in discovered(b)  # while it is a volume, the other host sees it
            a.remove(name)
            assert self.still_stored(a.backend, volume)
            assert name not in discovered(a)  # not on the host that removed it
            assert name not in discovered(keep_hosts())  # nor on one that never knew it
            assert a.names() == [] and self.still_stored(a.backend, volume)
        finally:
            self.delete_kept(a.backend, volume)

    def test_kept_volume_is_not_deleted_by_a_host_that_knew_it(
        self, keep_hosts: Callable[[], Harness]
    ) -> None:
        a, b = keep_hosts(), keep_hosts()
        name = unique("kept")
        volume = a.create(name, **self.keep_options)
        try:
            b.create(name, **{**self.keep_options, "keep_on_remove": "false"})  # adopted
            a.remove(name)  # kept: no longer a volume
            b.remove(name)  # b forgets it; what a kept is not b's to delete
            assert b.names() == [] and self.still_stored(a.backend, volume)
        finally:
            self.delete_kept(a.backend, volume)


def discovered(harness: Harness) -> list[str]:
    """The names one discovery pass takes in (after the pass, the host's whole list)."""
    harness.run(harness.service.discover(harness.driver))
    return harness.names()
