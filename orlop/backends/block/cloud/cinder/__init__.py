"""OpenStack Cinder volumes (driver kind `cinder`), attached through Nova: see `provider.py`."""

from orlop.backends.block.cloud.cinder.backend import CinderBackend
from orlop.backends.block.cloud.cinder.provider import CinderProvider
from orlop.backends.block.cloud.cinder.settings import CinderSettings

__all__ = ["CinderBackend", "CinderProvider", "CinderSettings"]
