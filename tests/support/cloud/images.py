"""Copying disk images the way a cloud copies a snapshot: only the parts that hold data."""

from __future__ import annotations

import os
from pathlib import Path


def copy_sparse(source: Path, target: Path) -> None:
    """Copy `source`'s data extents into `target` (made or kept), keeping holes as holes."""
    size = source.stat().st_size
    with open(source, "rb") as reader, open(target, "r+b" if target.exists() else "wb") as writer:
        offset = 0
        while offset < size:
            try:
                start = os.lseek(reader.fileno(), offset, os.SEEK_DATA)
            except OSError:  # no data after offset
                break
            end = os.lseek(reader.fileno(), start, os.SEEK_HOLE)
            os.lseek(reader.fileno(), start, os.SEEK_SET)
            writer.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = reader.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                writer.write(chunk)
                remaining -= len(chunk)
            offset = end
        if writer.seek(0, os.SEEK_END) < size:
            writer.truncate(size)
