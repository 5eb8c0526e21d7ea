"""The backend conformance suite: every backend must pass it, through the real service.

Use it Flocker-style: subclass `BackendConformance` in a test module named for the backend,
and provide the `backend` fixture (a fresh backend instance, cleaned up after the test) plus
the class attributes below. pytest collects the subclass (its name starts with Test).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from orlop.backends.base import Backend, Capabilities
from orlop.core.model import Conflict, InvalidName, InvalidOption, NotFound
from tests.support.harness import Harness
from tests.support.names import unique


class BackendConformance:
    # Options for a typical volume, and a different valid set (for the conflict check).
    create_options: ClassVar[dict[str, str]] = {}
    other_options: ClassVar[dict[str, str]] = {}
    # A size limit the volume enforces (bytes), when `create_options` sets one.
    size_limit: ClassVar[int | None] = None
    # False for volumes whose data ends with their last unmount (tmpfs, like Docker local).
    persistent: ClassVar[bool] = True

    @pytest.fixture
    def backend(self, tmp_path: Any) -> Backend:  # pragma: no cover - overridden
        raise NotImplementedError("a conformance subclass provides the backend fixture")

    @pytest.fixture
    def harness(self, backend: Backend, tmp_path: Any) -> Iterator[Harness]:
        harness = Harness(backend, unique("conf"), store_path=str(tmp_path / "orlop.db"))
        try:
            yield harness
        finally:
            for volume in list(harness.service.list(harness.driver)):
                for mount_id in list(volume.mount_ids):
                    with contextlib.suppress(Exception):
                        harness.unmount(volume.name, mount_id)
                with contextlib.suppress(Exception):
                    harness.remove(volume.name)
            harness.close()

    # lifecycle --------------------------------------------------------------------------
    def test_backend_satisfies_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert isinstance(backend.capabilities, Capabilities)
        assert backend.capabilities.scope in ("local", "global")

    def test_create_get_list_remove(self, harness: Harness) -> None:
        volume = harness.create("alpha", **self.create_options)
        assert harness.get("alpha") is volume
        assert volume.mountpoint and os.path.isabs(volume.mountpoint)
        assert harness.names() == ["alpha"]
        harness.remove("alpha")
        assert harness.names() == []
        with pytest.raises(NotFound):
            harness.get("alpha")

    def test_create_twice_is_a_noop(self, harness: Harness) -> None:
        first = harness.create("twice", **self.create_options)
        calls_before = dict(first.record)
        second = harness.create("twice", **self.create_options)
        assert second is first and second.record == calls_before
        assert harness.create("twice") is first  # Docker's create-on-demand sends no options

    def test_create_with_other_options_conflicts(self, harness: Harness) -> None:
        if not self.other_options:
            pytest.skip("backend declares no alternative options")
        harness.create("conflict", **self.create_options)
        with pytest.raises(Conflict, match="different options"):
            harness.create("conflict", **self.other_options)

    def test_unknown_option_leaves_nothing(self, harness: Harness) -> None:
        with pytest.raises(InvalidOption, match="allowed options are"):
            harness.create("bad", no_such_option="1")
        assert harness.names() == []

    def test_bad_name_refused(self, harness: Harness) -> None:
        for name in ("", "..", "a/b", ".hidden", "-dash", "x" * 256, "caf\u00e9"):
            with pytest.raises(InvalidName):
                harness.create(name, **self.create_options)
        assert harness.names() == []

    def test_remove_unknown(self, harness: Harness) -> None:
        with pytest.raises(NotFound):
            harness.remove("never-created")

    # data -------------------------------------------------------------------------------
    def test_data_survives_detach_and_reattach(self, harness: Harness) -> None:
        if not self.persistent:
            pytest.skip("volume data is ephemeral by design")
        harness.create("data", **self.create_options)
        path = harness.mount("data", "first")
        payload = os.urandom(256 * 1024)
        with open(os.path.join(path, "blob"), "wb") as blob:
            blob.write(payload)
            os.fsync(blob.fileno())
        harness.unmount("data", "first")
        path = harness.mount("data", "second")
        with open(os.path.join(path, "blob"), "rb") as blob:
            assert blob.read() == payload
        harness.unmount("data", "second")

    def test_attach_once_detach_after_last(self, harness: Harness) -> None:
        harness.create("shared", **self.create_options)
        path_a = harness.mount("shared", "a")
        path_b = harness.mount("shared", "b")
        assert path_a == path_b
        assert harness.mount("shared", "a") == path_a  # repeated ID: no change
        assert harness.get("shared").mounts == 2
        harness.unmount("shared", "a")
        with open(os.path.join(path_b, "still-writable"), "w") as file:
            file.write("yes")
        harness.unmount("shared", "unknown-id")  # unknown ID: no change
        assert harness.get("shared").mounts == 1
        harness.unmount("shared", "b")
        assert harness.get("shared").mounts == 0

    def test_remove_while_mounted_is_refused(self, harness: Harness) -> None:
        harness.create("busy", **self.create_options)
        harness.mount("busy", "holder")
        with pytest.raises(Conflict, match="in use by 1 mount"):
            harness.remove("busy")
        harness.unmount("busy", "holder")
        harness.remove("busy")
        assert harness.names() == []

    def test_usage_counts_written_data(self, harness: Harness) -> None:
        harness.create("usage", **self.create_options)
        path = harness.mount("usage", "u")
        with open(os.path.join(path, "blob"), "wb") as blob:
            blob.write(os.urandom(1024 * 1024))
            os.fsync(blob.fileno())
        volume = harness.run(harness.service.refresh_usage(harness.driver, "usage"))
        harness.unmount("usage", "u")
        if volume.usage is None:
            pytest.skip("backend reports no usage")
        assert volume.usage.used >= 1024 * 1024
        if self.size_limit:
            assert volume.usage.size is not None and volume.usage.size <= self.size_limit

    def test_size_is_honoured(self, harness: Harness) -> None:
        if not self.size_limit:
            pytest.skip("backend volumes have no size limit")
        harness.create("sized", **self.create_options)
        path = harness.mount("sized", "s")
        chunk = b"\0" * (1024 * 1024)
        with pytest.raises(OSError) as raised, open(os.path.join(path, "fill"), "wb") as fill:
            for _ in range(self.size_limit // len(chunk) + 16):
                fill.write(chunk)
            fill.flush()
            os.fsync(fill.fileno())
        assert raised.value.errno == 28  # ENOSPC
        os.unlink(os.path.join(path, "fill"))
        with open(os.path.join(path, "after"), "w") as after:
            after.write("usable again")
        harness.unmount("sized", "s")

    # restarts ---------------------------------------------------------------------------
    def test_mounts_survive_a_restart(self, harness: Harness, backend: Backend) -> None:
        harness.create("restart", **self.create_options)
        path = harness.mount("restart", "c1")
        with open(os.path.join(path, "mark"), "w") as mark:
            mark.write("kept")
        again = harness.restart(backend)
        harness.__dict__.update(again.__dict__)  # the fixture cleans up through the new one
        volume = harness.get("restart")
        assert volume.mount_ids == {"c1"}
        with pytest.raises(Conflict):
            harness.remove("restart")
        with open(os.path.join(volume.mountpoint, "mark")) as mark:
            assert mark.read() == "kept"
        harness.unmount("restart", "c1")
        harness.remove("restart")
