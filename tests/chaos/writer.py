"""The chaos run's workload: append numbered records to a file, fsync each, then acknowledge it.

    python writer.py FILE FIRST SEED [PAUSE]

Each record is one line `NNNNNNNNNN <16 hex>`, the hex a digest of the seed and the number
(so a record read back is known whole and not some other run's). A number is printed on
stdout — acknowledged — only after fsync returned for its record: an acknowledged record is
on the disk. An I/O error ends the writer with status 3 and the error on stderr.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time


def record(seed: str, number: int) -> bytes:
    digest = hashlib.sha256(f"{seed}:{number}".encode()).hexdigest()[:16]
    return f"{number:010d} {digest}\n".encode()


def parse(data: bytes, seed: str) -> set[int]:
    """The numbers of the whole, correct records in `data` (a torn last line is ignored)."""
    found = set()
    for line in data.split(b"\n"):
        head, _, _ = line.partition(b" ")
        if len(line) == 27 and head.isdigit() and record(seed, int(head)) == line + b"\n":
            found.add(int(head))
    return found


def main(path: str, first: int, seed: str, pause: float) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size:  # a torn tail (a writer killed mid-line) stays on its own line
            os.write(fd, b"\n")
        number = first
        while True:
            os.write(fd, record(seed, number))
            os.fsync(fd)
            sys.stdout.write(f"{number}\n")
            sys.stdout.flush()
            number += 1
            time.sleep(pause)
    except OSError as error:
        print(f"writer: {error}", file=sys.stderr)
        return 3
    finally:
        os.close(fd)


if __name__ == "__main__":
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.005
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], pause))
