"""sd_notify's send never blocks the event loop: a full queue drops the message, logged once."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest

from orlop.ops import notify

pytestmark = pytest.mark.unit


def test_a_reader_that_never_reads_neither_blocks_nor_floods_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "notify.sock")
    caplog.set_level(logging.INFO, "orlop.ops.notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as reader:
        reader.bind(path)  # never read: its receive queue fills up
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        results: list[bool] = []
        sender = threading.Thread(
            target=lambda: results.extend(notify.notify("WATCHDOG=1") for _ in range(5000)),
            daemon=True,
        )
        sender.start()
        sender.join(20)
        assert not sender.is_alive(), "a send blocked on a full queue"
        assert results[0] is True and results[-1] is False  # dropped once the queue was full
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "said once" in warnings[0].getMessage()
        while True:  # drain: the next send works, and says so once
            reader.setblocking(False)
            try:
                reader.recv(64)
            except BlockingIOError:
                break
        assert notify.notify("WATCHDOG=1") is True
        assert [r.getMessage() for r in caplog.records][-1] == "telling systemd works again"


def test_no_socket_is_no_one_to_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("READY=1") is False
