"""How a vSphere disk says which Orlop volume it is: its file name and the metadata file.

A volume of namespace N named V is `[datastore] <folder>/<enc(V)>.<h(N)>.vmdk`: `enc` is
`naming.encode_value` (lower case, digits, `_`, `-`; reversible) and `h(N)` eight hex digits
of the namespace. The real name comes back from the file name alone, and a folder holds
several namespaces apart. The hash part has no `-`, so no file vSphere adds beside a disk
(`…-flat.vmdk`, `…-000001.vmdk`, `…-ctk.vmdk`) can ever be another volume's disk. A name too
long for a datastore file name (255 bytes) is cut and a hash of it added; the metadata file
then carries the real name.

The metadata file `<same base>.json` holds what a VMDK cannot: Orlop's logical labels (the
volume and namespace, the create token, the race guard's claim) and facts (size, format).
A VMDK without one (a create interrupted between the two writes) is still found and named
from its file name.
"""

from __future__ import annotations

import json
from typing import Any

from orlop.backends.cloud.naming import encode_value, short_hash

_MAX_ENCODED = 200  # leaves room for the hash parts and "-sesparse.vmdk" within 255 bytes


def namespace_tag(namespace: str) -> str:
    return short_hash("namespace", namespace)


def base_name(namespace: str, volume: str) -> str:
    encoded = encode_value(volume)
    if len(encoded) > _MAX_ENCODED:
        encoded = f"{encoded[:_MAX_ENCODED]}.{short_hash(namespace, volume)}"
    return f"{encoded}.{namespace_tag(namespace)}"


def dump_metadata(labels: dict[str, str], facts: dict[str, Any]) -> bytes:
    return json.dumps({"orlop": 1, "labels": labels, "facts": facts}, sort_keys=True).encode()


def load_metadata(raw: bytes) -> tuple[dict[str, str], dict[str, Any]] | None:
    """(labels, facts) from a metadata file; None for one Orlop cannot read."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("labels"), dict):
        return None
    labels = {str(k): str(v) for k, v in data["labels"].items()}
    facts = data.get("facts")
    return labels, dict(facts) if isinstance(facts, dict) else {}
