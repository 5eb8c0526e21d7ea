"""The name this module had before the re-layout: PowerFlex's name encoding is `labels.py`."""

from orlop.backends.cloud.powerflex.labels import *  # noqa: F403
from orlop.backends.cloud.powerflex.labels import __all__ as __all__
