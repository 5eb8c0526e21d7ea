"""The Compute API through google-cloud-compute: clients, credentials, calls, operations.

One `Compute` per driver. Every call goes through `call`, which gives the request a timeout,
no client-side retries (the layer retries, with its own backoff) and turns any failure into
a CloudError. Operations are waited for with zoneOperations.wait, which answers as soon as the
operation is DONE (or after a while, and then we ask again) — the quickest way to learn it.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from orlop.backends.cloud.api import CloudError, ErrorKind
from orlop.backends.cloud.gce import errors
from orlop.backends.cloud.gce.settings import GceSettings

T = TypeVar("T")
SCOPES = ["https://www.googleapis.com/auth/compute"]


class Compute:
    """The clients of one driver, made on first use (credentials are looked up then)."""

    def __init__(self, settings: GceSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    def _credentials(self) -> Any:
        from google.auth import credentials as auth_credentials
        from google.auth import default as auth_default
        from google.auth import exceptions as auth_exceptions
        from google.oauth2 import service_account

        path = self.settings.credentials_file
        if path:
            try:
                return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    path, scopes=SCOPES
                )
            except (OSError, ValueError, KeyError) as error:
                raise CloudError(
                    f"cannot use credentials_file {path}: {error}; give a service-account "
                    "key (JSON) the daemon can read",
                    ErrorKind.CREDENTIALS,
                ) from None
        if self.settings.endpoint_url:
            return auth_credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]
        try:
            credentials, _ = auth_default(scopes=SCOPES)
            return credentials
        except auth_exceptions.DefaultCredentialsError as error:
            raise CloudError(
                f"no Google credentials: {error}. Run on a VM with a service account, set "
                "GOOGLE_APPLICATION_CREDENTIALS, or give the credentials_file setting",
                ErrorKind.CREDENTIALS,
            ) from None

    def client(self, name: str) -> Any:
        """One of DisksClient, InstancesClient, ZoneOperationsClient, SnapshotsClient,
        ZonesClient, by class name."""
        with self._lock:
            if name not in self._clients:
                try:
                    from google.api_core.client_options import ClientOptions
                    from google.cloud import compute_v1
                except ImportError:
                    raise CloudError(
                        "the gce driver needs google-cloud-compute: pip install 'orlop[gce]'",
                        ErrorKind.FAILED,
                    ) from None

                options = ClientOptions(api_endpoint=self.settings.endpoint_url or None)
                factory = getattr(compute_v1, name)
                self._clients[name] = factory(
                    credentials=self._credentials(), transport="rest", client_options=options
                )
            return self._clients[name]

    def call(self, what: str, method: Callable[..., T], **request: Any) -> T:
        """One API request; what it does in words (for the error message) first."""
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions
        from requests import exceptions as http_exceptions

        try:
            return method(**request, retry=None, timeout=self.settings.api_timeout)
        except api_exceptions.GoogleAPICallError as error:
            raise errors.from_response(
                what, int(error.code or 0), list(error.errors or []), str(error.message)
            ) from None
        except auth_exceptions.TransportError as error:
            raise CloudError(
                f"cannot reach Google's token service to {what}: {error}", ErrorKind.UNREACHABLE
            ) from None
        except auth_exceptions.GoogleAuthError as error:
            # RefreshError, or a 401 answered to anonymous credentials (they cannot refresh).
            raise CloudError(
                f"Google credentials were refused while trying to {what}: {error}",
                ErrorKind.CREDENTIALS,
            ) from None
        except (http_exceptions.ConnectionError, http_exceptions.Timeout) as error:
            endpoint = self.settings.endpoint_url or "https://compute.googleapis.com"
            raise CloudError(
                f"no answer from the Compute API at {endpoint} while trying to {what} "
                f"(within {self.settings.api_timeout:g} s): {type(error).__name__}",
                ErrorKind.UNREACHABLE,
            ) from None

    def wait(self, what: str, operation: Any, project: str, zone: str, timeout: float) -> None:
        """Wait until a zone operation is DONE; raise its error as a CloudError."""
        from google.cloud import compute_v1

        done = compute_v1.Operation.Status.DONE
        deadline = time.monotonic() + timeout
        operations = self.client("ZoneOperationsClient")
        while operation.status != done:
            if time.monotonic() >= deadline:
                raise CloudError(
                    f"Compute Engine did not finish to {what} within {timeout:g} s "
                    f"(operation {operation.name})",
                    ErrorKind.RETRYABLE,
                )
            operation = self.call(
                what, operations.wait, project=project, zone=zone, operation=operation.name
            )
        if operation.error and operation.error.errors:
            raise errors.from_operation(
                what,
                int(operation.http_error_status_code or 0),
                [(e.code, e.message) for e in operation.error.errors],
            )


def metadata(settings: GceSettings, path: str) -> str:
    """One value from the metadata server (computeMetadata/v1/<path>)."""
    url = f"{settings.metadata_url.rstrip('/')}/computeMetadata/v1/{path}"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=settings.metadata_timeout) as answer:
            if answer.headers.get("Metadata-Flavor") != "Google":
                raise CloudError(
                    f"{url} is not a Compute Engine metadata server (no Metadata-Flavor: "
                    "Google in its answer); set project, zone and instance in the settings",
                    ErrorKind.FAILED,
                )
            return str(answer.read().decode("utf-8", "replace")).strip()
    except urllib.error.HTTPError as error:
        raise CloudError(
            f"the metadata server answered {error.code} for {url}; set project, zone and "
            "instance in the settings when not on a Compute Engine VM",
            ErrorKind.FAILED,
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CloudError(
            f"no answer from the metadata server {settings.metadata_url} within "
            f"{settings.metadata_timeout:g} s ({reason}); set project, zone and instance in "
            "the settings when not on a Compute Engine VM",
            ErrorKind.UNREACHABLE,
        ) from None
