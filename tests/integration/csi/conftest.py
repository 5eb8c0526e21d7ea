"""Every CSI test's staging and target paths live in tmp_path: unmounted after each test,
passed or failed, before the daemon (whose mounts they bind) goes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import unmount_all_under


@pytest.fixture(autouse=True)
def _no_mount_left(tmp_path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        unmount_all_under(str(tmp_path))
