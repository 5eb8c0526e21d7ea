"""Google Persistent Disk (driver kind `gce`): a provider of the cloud-disk layer."""

from orlop.backends.block.cloud.gce.provider import GceProvider
from orlop.backends.block.cloud.gce.settings import GceSettings

__all__ = ["GceProvider", "GceSettings"]
