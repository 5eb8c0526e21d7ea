"""Matching the sockets systemd passes to drivers, and refusing the ones that cannot serve."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from orlop.core.model import ConfigError
from orlop.ops.activation import Passed, listen_fds, sockets_by_path


def _bound(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def test_matched_by_name_else_by_path_and_strays_closed(tmp_path: Path) -> None:
    one, two, stray = (_bound(tmp_path / f"{n}.sock") for n in ("one", "two", "stray"))
    drivers = {"one": str(tmp_path / "one.sock"), "two": str(tmp_path / "two.sock")}
    passed = [Passed("one", one), Passed("orlop.socket", two), Passed("gone", stray)]
    taken = sockets_by_path(passed, drivers, str(tmp_path / "admin.sock"))
    assert taken == {drivers["one"]: one, drivers["two"]: two}
    assert stray.fileno() == -1  # closed: no driver of that name
    one.close()
    two.close()


def test_a_socket_at_another_path_is_refused_naming_both(tmp_path: Path) -> None:
    sock = _bound(tmp_path / "elsewhere.sock")
    try:
        with pytest.raises(ConfigError, match=r"elsewhere\.sock.*ListenStream="):
            sockets_by_path([Passed("one", sock)], {"one": str(tmp_path / "one.sock")}, "/a")
    finally:
        sock.close()


def test_not_for_this_process_nothing_is_taken_and_the_variables_go() -> None:
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert listen_fds(environ) == []
    assert environ == {}
