"""Azure File Storage volumes (kind `azurefile`): an SMB share per volume, with a quota.

    drivers:
      orlop-azure:
        backend: azurefile
        options: {size: 100G}
        settings: {account: mystorage, account_key_file: /etc/orlop/azure-key}

The share layer (share/backend.py) over `AzureFileProvider` (provider.py); the SDK calls
are in client.py, the metadata Orlop marks shares with in labels.py, the settings in
settings.py, the options in limits.py.
"""

from __future__ import annotations

from typing import ClassVar

from orlop.backends.base import BackendContext
from orlop.backends.settings import BackendSettings
from orlop.backends.share.azurefile.limits import OPTIONS
from orlop.backends.share.azurefile.provider import AzureFileProvider
from orlop.backends.share.azurefile.settings import AzureFileSettings
from orlop.backends.share.backend import ShareBackend, share_capabilities
from orlop.core.options import OptionSet


class AzureFileBackend(ShareBackend):
    kind: ClassVar[str] = "azurefile"
    options: ClassVar[OptionSet] = OPTIONS
    settings_model: ClassVar[type[BackendSettings]] = AzureFileSettings
    capabilities = share_capabilities()
    provider: AzureFileProvider

    def __init__(self, context: BackendContext) -> None:
        settings = AzureFileSettings.parse(self.kind, context.settings)
        super().__init__(context, AzureFileProvider(context, settings), settings)
