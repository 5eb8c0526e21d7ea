"""Progress of long copies: what backends report, what the board answers, what the bar shows."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

from orlop.cli.progress import render
from orlop.core.progress import ProgressBoard, report, reporting
from orlop.host.clone import clone_file, copy_tree

MiB = 1024 * 1024


def test_sparse_copy_reports_bytes_and_keeps_holes(tmp_path: Path) -> None:
    source = tmp_path / "image"
    with open(source, "wb") as file:
        file.truncate(64 * MiB)
        file.seek(8 * MiB)
        file.write(os.urandom(3 * MiB))
        file.seek(40 * MiB)
        file.write(os.urandom(MiB))
    seen: list[tuple[int, int]] = []
    clone_file(str(source), str(tmp_path / "copy"), lambda done, total: seen.append((done, total)))
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()
    assert seen[-1] == (64 * MiB, 64 * MiB)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))  # never backwards
    assert os.stat(tmp_path / "copy").st_blocks * 512 < 16 * MiB  # holes stayed holes


def test_tree_copy_reports_the_total(tmp_path: Path) -> None:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a").write_bytes(b"x" * 1000)
    (tmp_path / "src" / "sub" / "b").write_bytes(b"y" * 234)
    (tmp_path / "dst").mkdir()
    seen: list[tuple[int, int]] = []
    copy_tree(str(tmp_path / "src"), str(tmp_path / "dst"), lambda d, t: seen.append((d, t)))
    assert (tmp_path / "dst" / "sub" / "b").read_bytes() == b"y" * 234
    assert seen[0] == (0, 1234) and seen[-1] == (1234, 1234)


def test_board_follows_the_worker_thread() -> None:
    board = ProgressBoard()
    halfway = threading.Event()
    finish = threading.Event()

    def backend_call(size: int) -> str:
        report(size // 2, size)
        halfway.set()
        finish.wait(5)
        report(size, size)
        return "done"

    with board.task("t1", "copy") as task:
        worker = threading.Thread(target=lambda: reporting(task, backend_call, 1000))
        worker.start()
        assert halfway.wait(5)
        shown = board.get("t1")
        assert shown is not None and shown.as_dict()["done"] == 500
        assert shown.as_dict()["total"] == 1000 and not shown.as_dict()["finished"]
        finish.set()
        worker.join(5)
    final = board.get("t1")
    assert final is not None and final.as_dict()["finished"] and final.done == 1000
    report(1, 2)  # no current task in this thread: ignored
    assert board.get("unknown") is None


def test_bar() -> None:
    line = render({"done": 512 * MiB, "total": 1024 * MiB, "rate": 64 * MiB, "eta": 8.0})
    assert line.startswith("[" + "#" * 15 + "-" * 15 + "]")
    assert "512M/1.0G" in line and "64.0M/s" in line and "ETA 8s" in line
    assert "ETA -" in render({"done": 0, "total": 0, "rate": 0, "eta": None})
