"""The `cinder` driver's settings: how to reach Cinder and Nova, and which instance this is."""

from __future__ import annotations

from pydantic import field_validator, model_validator

from orlop.backends.cloud.api import CloudSettings


class CinderSettings(CloudSettings):
    """Authentication is one of three ways:

    * `cloud`: an entry of clouds.yaml (openstacksdk's own search path, OS_CLIENT_CONFIG_FILE);
    * `auth_url`, `username`, `password_file`, `project_id` (+ `user_domain`,
      `project_domain`): a Keystone v3 password login;
    * `token_file` with `block_storage_endpoint` and `compute_endpoint`: a token sent as is,
      no Keystone and no service catalog.

    `block_storage_endpoint` / `compute_endpoint` also skip the catalog with the first two.
    """

    cloud: str | None = None
    auth_url: str | None = None
    username: str | None = None
    password_file: str | None = None  # a file holding the password (0600), never the password
    project_id: str | None = None
    user_domain: str = "Default"
    project_domain: str = "Default"
    region: str | None = None
    block_storage_endpoint: str | None = None  # e.g. https://cinder:8776/v3/<project id>
    compute_endpoint: str | None = None  # e.g. https://nova:8774/v2.1
    token_file: str | None = None  # a file holding a token (0600), sent as X-Auth-Token
    instance_id: str | None = None  # this server's UUID; default: the metadata service
    metadata_url: str = "http://169.254.169.254"
    metadata_timeout: float = 5.0
    api_timeout: float = 30.0  # one HTTP request to Keystone, Cinder or Nova

    @field_validator("metadata_url", "auth_url", "block_storage_endpoint", "compute_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> CinderSettings:
        password = [self.auth_url, self.username, self.password_file, self.project_id]
        ways = [
            self.cloud is not None,
            any(v is not None for v in password),
            self.token_file is not None,
        ]
        if sum(ways) != 1:
            raise ValueError(
                "set exactly one way to authenticate: cloud (a clouds.yaml entry); or "
                "auth_url, username, password_file and project_id; or token_file with "
                "block_storage_endpoint and compute_endpoint"
            )
        if ways[1] and not all(v is not None for v in password):
            missing = [
                name
                for name, v in zip(
                    ("auth_url", "username", "password_file", "project_id"), password, strict=True
                )
                if v is None
            ]
            raise ValueError(f"password authentication also needs {', '.join(missing)}")
        if ways[2] and not (self.block_storage_endpoint and self.compute_endpoint):
            raise ValueError(
                "token_file needs block_storage_endpoint and compute_endpoint: a token sent "
                "as is comes without a service catalog"
            )
        return self
