"""The name this module had before the re-layout: DigitalOcean's tag encoding is `labels.py`."""

from orlop.backends.cloud.digitalocean.labels import *  # noqa: F403
from orlop.backends.cloud.digitalocean.labels import __all__ as __all__
