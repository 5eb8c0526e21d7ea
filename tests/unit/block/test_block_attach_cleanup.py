"""The block layer gives the device back after a failed mount, and says so when it cannot."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import pytest

from orlop.backends.base import BackendContext, Capabilities, Check, VolumeRef
from orlop.backends.block.backend import BlockBackend, BlockSettings
from orlop.backends.settings import BackendSettings
from orlop.core.model import BackendError
from orlop.core.options import Option, OptionSet, canonical_size


class StuckProvider:
    """A device that appears at a path where no filesystem can be found, and will not go."""

    kind: ClassVar[str] = "stuck"
    options: ClassVar[OptionSet] = OptionSet([Option("size", canonical_size)])
    settings_model: ClassVar[type[BackendSettings]] = BlockSettings
    capabilities = Capabilities()

    def __init__(self, context: BackendContext) -> None:
        self.device = str(Path(context.state_dir) / "no-such-device")
        self.detaches = 0

    def validate(self, name: str, options: dict[str, str]) -> None:
        pass

    def create(self, volume: VolumeRef) -> dict[str, Any]:
        return {}

    def remove(self, volume: VolumeRef) -> None:
        pass

    def attach_device(self, volume: VolumeRef) -> str:
        return self.device

    def detach_device(self, volume: VolumeRef) -> None:
        self.detaches += 1
        raise BackendError("the device is busy")

    def device_path(self, volume: VolumeRef) -> str | None:
        return self.device

    def grow(self, volume: VolumeRef, size: int) -> dict[str, Any]:
        return {}

    def describe(self, volume: VolumeRef) -> dict[str, Any]:
        return {}

    @classmethod
    def host_checks(cls) -> list[Check]:
        return []


class StuckBackend(BlockBackend):
    provider_class = StuckProvider


def test_failed_cleanup_after_a_failed_mount_is_logged_and_the_mount_error_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = BackendContext("stuck", str(tmp_path))
    provider = StuckProvider(context)
    backend = StuckBackend(context, provider)
    volume = VolumeRef("v", {"size": str(1 << 30)})
    backend.create(volume)
    backend.journal.update("v", formatted=True, fs="ext4")  # formatted once; now blank
    with caplog.at_level(logging.ERROR), pytest.raises(BackendError) as raised:
        backend.attach(volume)
    assert "busy" not in str(raised.value)  # the user sees why the mount failed
    assert provider.detaches == 1
    assert "detaching after the failed mount failed too: the device is busy" in caplog.text
