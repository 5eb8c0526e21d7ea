"""openstacksdk for the provider: one connection from the settings, errors as CloudErrors.

Nothing here logs or keeps a password or token beyond the keystoneauth session that sends it.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from orlop.backends.cloud.api import CloudError, ErrorKind
from orlop.backends.cloud.cinder.settings import CinderSettings
from orlop.core.model import ConfigError, OrlopError


def read_secret_file(path: str, what: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} file {path}: {error.strerror}") from None
    if not text:
        raise ConfigError(f"the {what} file {path} is empty")
    return text


def connect(settings: CinderSettings) -> Any:
    """An `openstack.connection.Connection` for Cinder (block storage v3) and Nova."""
    import openstack.connection
    from keystoneauth1 import session as ks_session
    from keystoneauth1 import token_endpoint

    overrides: dict[str, Any] = {"block_storage_api_version": "3"}
    if settings.block_storage_endpoint:
        overrides["block_storage_endpoint_override"] = settings.block_storage_endpoint
    if settings.compute_endpoint:
        overrides["compute_endpoint_override"] = settings.compute_endpoint
    if settings.region:
        overrides["region_name"] = settings.region
    if settings.token_file:
        token = read_secret_file(settings.token_file, "token")
        # keystoneauth's version discovery goes out unauthenticated; a Cinder without
        # Keystone (noauth) answers that 204, so the token rides on every request.
        session = ks_session.Session(
            auth=token_endpoint.Token(settings.block_storage_endpoint, token),
            additional_headers={"X-Auth-Token": token},
            timeout=settings.api_timeout,
        )
        return openstack.connection.Connection(session=session, **overrides)
    if settings.cloud:
        from openstack.exceptions import ConfigException

        try:
            return openstack.connect(
                cloud=settings.cloud, api_timeout=settings.api_timeout, **overrides
            )
        except ConfigException as error:
            raise ConfigError(
                f"cloud {settings.cloud!r}: {error} (clouds.yaml is looked for in ./, "
                "~/.config/openstack/, /etc/openstack/, or where OS_CLIENT_CONFIG_FILE says)"
            ) from None
    assert settings.password_file is not None
    auth = {
        "auth_url": settings.auth_url,
        "username": settings.username,
        "password": read_secret_file(settings.password_file, "password"),
        "project_id": settings.project_id,
        "user_domain_name": settings.user_domain,
        "project_domain_name": settings.project_domain,
    }
    return openstack.connection.Connection(
        auth_type="password", auth=auth, api_timeout=settings.api_timeout, **overrides
    )


def metadata_instance(settings: CinderSettings) -> tuple[str, str | None]:
    """(uuid, availability zone) of this server from the OpenStack metadata service."""
    url = f"{settings.metadata_url}/openstack/latest/meta_data.json"
    try:
        with urllib.request.urlopen(url, timeout=settings.metadata_timeout) as response:
            document = json.load(response)
        return str(document["uuid"]), document.get("availability_zone")
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = getattr(error, "reason", None) or error
        raise CloudError(
            f"the OpenStack metadata service at {url} gave no instance UUID ({reason}); "
            "set instance_id in the driver settings when not on a Nova instance",
            ErrorKind.UNREACHABLE,
        ) from None


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Run an openstacksdk call; any failure leaves as a CloudError saying `what` failed."""
    try:
        yield
    except OrlopError:  # CloudError, and a user's mistake found on the way (ConfigError)
        raise
    except Exception as error:
        raise_cloud_error(what, error)


def raise_from_response(response: Any) -> None:
    """openstacksdk's check of a raw response: an HttpException for a 4xx or 5xx."""
    from openstack import exceptions

    exceptions.raise_from_response(response)


def raise_cloud_error(what: str, error: Exception) -> NoReturn:
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    if isinstance(error, sdk.HttpException) and error.status_code is not None:
        status = int(error.status_code)
        detail = _detail(error)
        raise CloudError(f"{what}: {detail}", _kind(status, detail), code=str(status)) from None
    if isinstance(error, ks.http.HttpError):  # from Keystone itself (a wrong password)
        status = int(error.http_status or 0)
        raise CloudError(
            f"{what}: Keystone refused the login ({status} {error.message})",
            ErrorKind.CREDENTIALS if status in (400, 401, 403) else _kind(status, ""),
            code=str(status),
        ) from None
    if isinstance(error, ks.ConnectionError | ks.DiscoveryFailure | ks.EndpointNotFound):
        raise CloudError(
            f"{what}: no answer from the OpenStack API ({type(error).__name__}: {error})",
            ErrorKind.UNREACHABLE,
        ) from None
    if isinstance(error, ks.auth.AuthorizationFailure | ks.MissingAuthPlugin):
        raise CloudError(f"{what}: {error}", ErrorKind.CREDENTIALS) from None
    raise CloudError(f"{what}: {type(error).__name__}: {error}", ErrorKind.FAILED) from None


def _detail(error: Any) -> str:
    details = getattr(error, "details", None)
    if details:
        return str(details)
    return f"HTTP {error.status_code}"


def _kind(status: int, detail: str) -> ErrorKind:
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status in (401, 403):
        return ErrorKind.CREDENTIALS
    if status == 429:
        return ErrorKind.THROTTLED
    if status >= 500 or status == 409:
        return ErrorKind.RETRYABLE  # Nova's 409: the instance is busy with another task
    if status == 400 and "status must be" in detail:
        return ErrorKind.IN_USE  # Cinder's reserve refused: the volume is not available
    if status in (400, 413):
        return ErrorKind.INVALID  # 413: Cinder's quota (VolumeSizeExceedsAvailableQuota)
    return ErrorKind.FAILED
