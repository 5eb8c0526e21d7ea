"""Make the state directories `test_state_compat.py` reads, with whichever Orlop is on the path.

    rm -rf /tmp/s && git archive main | (mkdir /tmp/m && tar -x -C /tmp/m)
    PYTHONPATH=/tmp/m python tests/integration/snapshots/state/make_state.py /tmp/s
    tar -C /tmp/s --sparse -czf tests/integration/snapshots/state/main-258ba75.tar.gz .

Run as root (a loop device formats the loopfile volume). What it makes: a directory driver
(`dir/`) with volume `db` holding `table` = "version 2" and a snapshot `before` of it at
"version 1"; a loopfile driver (`block/`) the same with volume `img` (ext4, 16M).
"""

from __future__ import annotations

import os
import sys

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.directory.backend import DirectoryBackend
from orlop.backends.loopfile.provider import LoopFileBackend


def write(path: str, text: str) -> None:
    with open(os.path.join(path, "table"), "w") as file:
        file.write(text)
        os.fsync(file.fileno())


def fill(backend: DirectoryBackend | LoopFileBackend, name: str, **options: str) -> None:
    canonical = backend.options.validate(options, {})
    backend.validate(name, canonical)
    volume = VolumeRef(name, canonical)
    volume.record = backend.create(volume)
    write(backend.attach(volume), "version 1")
    backend.detach(volume)
    backend.create_snapshot(volume, "before")
    write(backend.attach(volume), "version 2")
    backend.detach(volume)


def main(out: str) -> None:
    fill(DirectoryBackend(BackendContext("compat-dir", os.path.join(out, "dir"))), "db")
    block = LoopFileBackend(BackendContext("compat-block", os.path.join(out, "block")))
    fill(block, "img", size="16M", fs="ext4")


if __name__ == "__main__":
    main(sys.argv[1])
