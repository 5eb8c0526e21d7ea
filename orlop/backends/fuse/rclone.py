"""Small helpers for driving rclone: its environment, its control API, its error text."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import urllib.request
from typing import Any

from orlop.host.run import CommandError

RC_USER = "orlop"


def child_env() -> dict[str, str]:
    # rclone fails on AWS_CA_BUNDLE with its own HTTP transport; `ca_cert` is its option.
    return {key: value for key, value in os.environ.items() if key != "AWS_CA_BUNDLE"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def htpasswd_line(password: str) -> str:
    """An htpasswd entry (SHA1 form, which rclone's --rc-htpasswd reads) for RC_USER."""
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{RC_USER}:{{SHA}}{digest}\n"


def rc_call(port: int, password: str, method: str, timeout: float) -> dict[str, Any]:
    """POST {} to rclone's remote control on 127.0.0.1:`port`; raises OSError/ValueError."""
    token = base64.b64encode(f"{RC_USER}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/{method}",
        data=b"{}",
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
    )
    # Never through a proxy from the environment: this is loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        answer = json.load(response)
    return answer if isinstance(answer, dict) else {}


def reason(error: CommandError) -> str:
    """rclone's own complaint, without its timestamps, request IDs and retry chatter."""
    stamp = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:[A-Z]+ *: )?")
    lines = [stamp.sub("", line).strip() for line in (error.stderr or str(error)).splitlines()]
    noise = ("status code:", "request id:", "Attempt ")
    lines = [line for line in lines if line and not line.startswith(noise)]
    final = [i for i, line in enumerate(lines) if line.startswith("Failed to ")]
    if final:
        reason = [lines[final[-1]].split(": ", 1)[-1]]
        reason += [line for line in lines[final[-1] + 1 :] if line.startswith("caused by:")]
        return " ".join(reason)[:600]
    return " ".join(lines[-2:])[-600:] or str(error)
