"""The Azure Files client's former home: its names are in client.py and labels.py now."""

from orlop.backends.share.azurefile.client import AzureFiles
from orlop.backends.share.azurefile.labels import METADATA_KEPT, METADATA_VOLUME

__all__ = ["METADATA_KEPT", "METADATA_VOLUME", "AzureFiles"]
