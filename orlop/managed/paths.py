"""Where things are inside a managed plugin; standard library only (the entry point loads
this before anything else)."""

from __future__ import annotations

import re

STATE_DIR = "/var/lib/orlop"  # the plugin's propagatedMount
PLUGIN_DIR = "/run/docker/plugins"  # Docker binds the host's /run/docker/plugins/<id> here
ADMIN_SOCKET = f"{PLUGIN_DIR}/admin.sock"

_KIND = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")


def socket_name(kind: str) -> str | None:
    """The driver socket's file name for plugin kind `kind`; None for a malformed kind."""
    return f"{kind}.sock" if _KIND.match(kind) else None
