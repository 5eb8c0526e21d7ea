"""A full state disk: the store refuses the change with StateFull (a message saying where and
what to do), keeps what it had, and works again once there is room (found by the chaos run's
'full' step: the raw 'database or disk is full' came back as an internal error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orlop.core.model import OrlopError, State, StateFull, Volume
from orlop.core.store import Store

pytestmark = pytest.mark.unit


def _volume(name: str) -> Volume:
    return Volume(
        "drv", name, "directory", {"pad": "x" * 3000}, {}, "2026-01-01T00:00:00Z", State.READY
    )


def test_a_full_state_disk_refuses_the_change_clearly_and_keeps_what_was_there(
    tmp_path: Path,
) -> None:
    store = Store(str(tmp_path / "orlop.db"))
    kept = _volume("kept")
    store.insert(kept)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full from here on
    with pytest.raises(StateFull, match=r"state disk is full \(.*\): nothing was recorded") as err:
        for index in range(50):
            store.insert(_volume(f"new{index}"))
    assert isinstance(err.value, OrlopError)  # a user's error, not an internal one
    assert not store._db.in_transaction  # rolled back: the next change can begin
    with pytest.raises(StateFull):
        store.insert(_volume("again"))
    assert "kept" in [v.name for v in store.load()]
    store._db.execute(f"PRAGMA max_page_count={pages * 100}")  # room again
    store.update(kept, add_mount="m1")
    store.insert(_volume("later"))
    store.close()
    loaded = {v.name: v for v in Store(str(tmp_path / "orlop.db")).load()}
    assert loaded["kept"].mount_ids == {"m1"} and "later" in loaded
