"""OpenStack Cinder volumes (driver kind `cinder`), attached through Nova."""

from orlop.backends.block.cloud.cinder.provider import CinderProvider
from orlop.backends.block.cloud.cinder.settings import CinderSettings

__all__ = ["CinderProvider", "CinderSettings"]
