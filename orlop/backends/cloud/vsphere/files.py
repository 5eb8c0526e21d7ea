"""Where a volume's files live in a datastore, and the small metadata file beside each VMDK.

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
from dataclasses import dataclass
from typing import Any

from orlop.backends.cloud.naming import decode_value, encode_value, short_hash

_MAX_ENCODED = 200  # leaves room for the hash parts and "-sesparse.vmdk" within 255 bytes


def namespace_tag(namespace: str) -> str:
    return short_hash("namespace", namespace)


def base_name(namespace: str, volume: str) -> str:
    encoded = encode_value(volume)
    if len(encoded) > _MAX_ENCODED:
        encoded = f"{encoded[:_MAX_ENCODED]}.{short_hash(namespace, volume)}"
    return f"{encoded}.{namespace_tag(namespace)}"


@dataclass(frozen=True, slots=True)
class DiskPath:
    """`[datastore] folder/base.vmdk`, the ID of a volume's disk."""

    datastore: str
    folder: str
    base: str

    @classmethod
    def of(cls, datastore: str, folder: str, namespace: str, volume: str) -> DiskPath:
        return cls(datastore, folder, base_name(namespace, volume))

    @classmethod
    def parse(cls, disk_id: str) -> DiskPath | None:
        """The path in a disk ID, None for one that is not `[ds] folder/base.vmdk`."""
        if not disk_id.startswith("[") or "] " not in disk_id:
            return None
        datastore, _, path = disk_id[1:].partition("] ")
        folder, _, file = path.rpartition("/")
        if not folder or not file.endswith(".vmdk"):
            return None
        return cls(datastore, folder, file[: -len(".vmdk")])

    @property
    def id(self) -> str:
        return f"[{self.datastore}] {self.folder}/{self.base}.vmdk"

    @property
    def vmdk(self) -> str:  # the path inside the datastore
        return f"{self.folder}/{self.base}.vmdk"

    @property
    def metadata(self) -> str:
        return f"{self.folder}/{self.base}.json"

    @property
    def folder_id(self) -> str:
        return f"[{self.datastore}] {self.folder}"

    def volume(self) -> str | None:
        """The Docker name in the file name, None if it was cut (or is not Orlop's)."""
        parts = self.base.split(".")
        if len(parts) != 2:
            return None
        try:
            return decode_value(parts[0])
        except ValueError:
            return None

    def in_namespace(self, namespace: str) -> bool:
        return self.base.endswith("." + namespace_tag(namespace))


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
