"""Orlop: persistent volumes for containers, on any storage."""

from orlop.core.model import OrlopError

__version__ = "0.1.0"
__all__ = ["OrlopError", "__version__"]
