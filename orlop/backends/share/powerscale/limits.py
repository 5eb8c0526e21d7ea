"""What a PowerScale volume may ask for: its options, the quota's bounds, NFS clients."""

from __future__ import annotations

import re

from orlop.backends.fuse.options import parse_timeout
from orlop.backends.share.provider import host_option, presentation_options
from orlop.core.options import MAX_SIZE, Option, OptionSet, bounded_size, canonical_bool, one_of

_CLIENT_RE = re.compile(r"[A-Za-z0-9.:/\-\[\]*]+\Z")
DEFAULT_SIZE = 10 * 1024**3
NFS_ONLY = ("nfs_version", "clients", "root_squash")


def canonical_clients(value: str) -> str:
    """NFS clients allowed: host names, addresses or CIDR ranges, comma-separated."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    for part in parts:
        if not _CLIENT_RE.match(part):
            raise ValueError(f"{part!r} is not a host name, address or CIDR range")
    return ",".join(parts)


def canonical_hard(value: str) -> str:
    return str(bounded_size(value, 1024**2, MAX_SIZE, "a PowerScale directory quota"))


OPTIONS = OptionSet(
    [
        Option("size", canonical_hard, "the directory quota's hard threshold (default 10G)"),
        Option("protocol", one_of("nfs", "smb"), "nfs (default) or smb"),
        Option("nfs_version", one_of("3", "4", "4.0", "4.1", "4.2"), "NFS version (4.1)"),
        Option("clients", canonical_clients, "NFS clients allowed, comma-separated (all)"),
        Option("root_squash", canonical_bool, "NFS: map root to nobody (true)"),
        host_option(
            "keep_on_remove", canonical_bool, "Remove keeps directory, quota and export (false)"
        ),
        host_option("timeout", parse_timeout, "seconds to reach the cluster and mount (20)"),
        *presentation_options(),
    ]
)
