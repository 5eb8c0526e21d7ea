"""Docker volume names as share names: 3 to 63 lowercase letters, digits and single hyphens.

A name that already is one is used as it is (readable, and an existing share of that name
is found). Any other name becomes a slug of it plus a short hash of the exact name, so
"Data" and "data" never meet in one share; the exact name also goes into the share's
metadata, which is how Orlop recognises its own shares.
"""

from __future__ import annotations

import hashlib
import re

_SHARE_RE = re.compile(r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")


def is_share_name(value: str) -> bool:
    return bool(_SHARE_RE.match(value))


def canonical_share(value: str) -> str:
    """Option check: an existing share's name."""
    if not is_share_name(value):
        raise ValueError(
            f"{value!r} is not a share name: 3 to 63 lowercase letters, digits and single "
            "hyphens, starting and ending with a letter or digit"
        )
    return value


def share_name(volume: str) -> str:
    """The share that holds Docker volume `volume`."""
    if is_share_name(volume):
        return volume
    digest = hashlib.sha256(volume.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", volume.lower()).strip("-")[: 63 - 9].strip("-")
    return f"{slug}-{digest}" if slug else f"v-{digest}"
