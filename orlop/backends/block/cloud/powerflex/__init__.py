"""Dell PowerFlex (ScaleIO) volumes on the cloud-disk layer (driver kind `powerflex`)."""

from __future__ import annotations

from orlop.backends.block.cloud.powerflex.provider import PowerFlexProvider

__all__ = ["PowerFlexProvider"]
