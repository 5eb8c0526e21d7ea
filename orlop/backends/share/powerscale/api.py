"""The PowerScale client's former home: its classes are in client.py now."""

from orlop.backends.share.powerscale.client import OneFs, SessionClient

__all__ = ["OneFs", "SessionClient"]
