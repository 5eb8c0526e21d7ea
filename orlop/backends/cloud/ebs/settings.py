"""The `ebs` driver's settings: region, endpoint, credentials, this instance, devices."""

from __future__ import annotations

from pydantic import SecretStr, model_validator

from orlop.backends.cloud.api import CloudSettings


class EbsSettings(CloudSettings):
    """The `ebs` driver's settings (the layer's common ones included)."""

    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    profile: str | None = None
    instance_id: str | None = None
    availability_zone: str | None = None
    imds_endpoint: str = "http://169.254.169.254"
    imds_timeout: float = 2.0
    device_root: str = "/dev"

    @model_validator(mode="after")
    def _keys_go_together(self) -> EbsSettings:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("access_key_id and secret_access_key go together")
        return self
