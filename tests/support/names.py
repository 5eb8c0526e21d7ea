"""Unique names, so tests never collide with a real installation or with each other."""

from __future__ import annotations

import secrets


def unique(prefix: str = "orlop-t") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
