"""Long calls with a progress bar: the call runs in a thread while the CLI polls `progress`.

The bar (bytes done/total, rate, ETA) goes to stderr, and only when stderr is a terminal or
`ORLOP_PROGRESS=1` is set; `--json` output on stdout is never mixed with it.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from typing import Any

from orlop.cli.client import AdminClient
from orlop.core.model import OrlopError
from orlop.core.options import format_size

LONG_CALL_TIMEOUT = 7 * 24 * 3600.0  # a backup of a big volume takes as long as it takes
POLL_SECONDS = 0.25
BAR_WIDTH = 30


def wants_bar() -> bool:
    return sys.stderr.isatty() or os.environ.get("ORLOP_PROGRESS") == "1"


def render(progress: dict[str, Any]) -> str:
    """One line: `[#####-----]  1.2G/4.0G  85.3M/s  ETA 34s`."""
    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    filled = int(BAR_WIDTH * done / total) if total else 0
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    eta = progress.get("eta")
    shown_eta = f"ETA {eta:.0f}s" if isinstance(eta, (int, float)) else "ETA -"
    rate = format_size(int(progress.get("rate") or 0))
    return f"[{bar}] {format_size(done)}/{format_size(total)}  {rate}/s  {shown_eta}"


def call_with_progress(client: AdminClient, endpoint: str, **body: Any) -> Any:
    """`client.call(endpoint, **body)` with a progress bar while it runs."""
    long_client = AdminClient(client.socket_path, timeout=LONG_CALL_TIMEOUT)
    if not wants_bar():
        return long_client.call(endpoint, **body)
    task = secrets.token_hex(8)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = long_client.call(endpoint, task=task, **body)
        except OrlopError as error:
            outcome["error"] = error

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    shown = False
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        try:
            progress = client.call("progress", task=task)
        except OrlopError:
            continue  # not started yet, or already gone
        sys.stderr.write("\r" + render(progress))
        sys.stderr.flush()
        shown = True
    if shown:
        sys.stderr.write("\n")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
