"""What an Azure Files volume may ask for: its options, quota limits and access tiers."""

from __future__ import annotations

import math

from orlop.backends.fuse.options import parse_timeout
from orlop.backends.share.naming import canonical_share
from orlop.backends.share.provider import host_option, presentation_options
from orlop.core.options import GIB, Option, OptionSet, bounded_size, canonical_bool, one_of

MAX_QUOTA_GIB = 102400  # 100 TiB: a large file share, Azure's limit
DEFAULT_QUOTA = 100 * GIB
TIERS = ("TransactionOptimized", "Hot", "Cool", "Premium")


def canonical_quota(value: str) -> str:
    """A size rounded up to whole GiB (Azure quotas are GiB), 1 GiB to 100 TiB, in bytes."""
    size = bounded_size(value, GIB, MAX_QUOTA_GIB * GIB, "an Azure file share")
    return str(math.ceil(size / GIB) * GIB)


OPTIONS = OptionSet(
    [
        Option("size", canonical_quota, "the share's quota, whole GiB (default 100G)"),
        Option("share", canonical_share, "an existing share: volumes are directories in it"),
        Option("access_tier", one_of(*TIERS), "TransactionOptimized, Hot, Cool, Premium"),
        # One meaning: keep_on_remove=false is delete_on_remove=true.
        host_option("delete_on_remove", canonical_bool, "delete the share at Remove (false)"),
        host_option("keep_on_remove", canonical_bool, "keep the share at Remove (true)"),
        host_option("timeout", parse_timeout, "seconds to reach Azure and mount (default 20)"),
        *presentation_options(),
    ]
)
