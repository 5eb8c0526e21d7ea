"""DigitalOcean API calls through `pydo`, every answer checked, every failure a CloudError.

Two habits of pydo are handled here, once:

* for documented error statuses (400, 404, 422, …) its generated operations *return* the error
  body (`{"id": "not_found", "message": …}`) instead of raising, and raise for the others. Every
  call goes through `Api.call`, which takes the HTTP status from the pipeline response (`cls=`)
  and turns any status of 400 or more into a CloudError of the right kind;
* its bearer-token policy refuses plain HTTP. The settings allow `http://` only to a loopback
  address (a test endpoint); for that one, the check is lifted per call (`enforce_https`).

pydo's own retries are off (`retry_total=0`): the cloud-disk layer retries, with its rules.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orlop.backends.cloud.api import CloudError, ErrorKind
from orlop.backends.cloud.digitalocean.settings import DigitalOceanSettings as DigitalOceanSettings
from orlop.backends.settings import secret_value

PAGE = 200  # items a listing asks for per page
_KINDS = {
    400: ErrorKind.INVALID,
    401: ErrorKind.CREDENTIALS,
    403: ErrorKind.CREDENTIALS,
    404: ErrorKind.NOT_FOUND,
    409: ErrorKind.INVALID,
    422: ErrorKind.INVALID,
    429: ErrorKind.THROTTLED,
}


def read_token(settings: DigitalOceanSettings) -> str:
    if settings.token is not None:
        token = secret_value(settings.token) or ""
    else:
        path = Path(settings.token_file or "")
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise CloudError(
                f"cannot read the DigitalOcean token_file {path}: {error.strerror}",
                ErrorKind.CREDENTIALS,
            ) from None
    if not token:
        raise CloudError(
            "the DigitalOcean API token is empty: put a token in token_file", ErrorKind.CREDENTIALS
        )
    return token


class Api:
    """One pydo client, made on first use; `call` runs one operation and checks its answer."""

    def __init__(self, settings: DigitalOceanSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()
        self._plain_http = urlsplit(settings.api_url).scheme == "http"

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import pydo  # imported on use: a host without DigitalOcean volumes needs no pydo

                self._client = pydo.Client(
                    read_token(self.settings),
                    endpoint=self.settings.api_url.rstrip("/"),
                    retry_total=0,
                    connection_timeout=self.settings.api_timeout,
                    read_timeout=self.settings.api_timeout,
                )
            return self._client

    def call(
        self, what: str, operation: Callable[[Any], Callable[..., Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """`operation(client)(*args, **kwargs)`; its body, or CloudError for any failure."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        if self._plain_http:
            kwargs["enforce_https"] = False

        def keep(pipeline_response: Any, body: Any, headers: Any) -> tuple[int, Any]:
            return pipeline_response.http_response.status_code, body

        try:
            status, body = operation(self.client)(*args, cls=keep, **kwargs)
        except ClientAuthenticationError as error:
            status, body = error.status_code or 401, _body_of(error)
        except HttpResponseError as error:
            status, body = error.status_code or 500, _body_of(error)
        except ServiceRequestError as error:
            raise CloudError(
                f"{what}: the DigitalOcean API at {self.settings.api_url} did not answer "
                f"({_reason(error)})",
                ErrorKind.UNREACHABLE,
            ) from None
        except ServiceResponseError as error:
            raise CloudError(
                f"{what}: no answer from the DigitalOcean API within "
                f"{self.settings.api_timeout:g}s ({_reason(error)})",
                ErrorKind.RETRYABLE,
            ) from None
        if status >= 400:
            raise api_error(what, status, body)
        return body

    def list_all(self, what: str, operation: Any, key: str, **query: Any) -> list[dict[str, Any]]:
        """Every item under `key` of a listing, page by page (PAGE items a page)."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.call(what, operation, per_page=PAGE, page=page, **query)
            items.extend(answer.get(key) or [])
            if not ((answer.get("links") or {}).get("pages") or {}).get("next"):
                return items
            page += 1


def api_error(what: str, status: int, body: Any) -> CloudError:
    code = str(body.get("id", "")) if isinstance(body, dict) else ""
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    kind = _KINDS.get(status, ErrorKind.RETRYABLE if status >= 500 else ErrorKind.FAILED)
    detail = message or f"HTTP {status}"
    if kind is ErrorKind.CREDENTIALS:
        detail += ": check the token (token_file) and its scopes (read and write)"
    answered = f"{status} {code}" if code else str(status)
    return CloudError(f"{what}: DigitalOcean answered {answered}: {detail}", kind, code)


def _body_of(error: Any) -> Any:
    try:
        return error.response.json()
    except Exception:
        return None


def _reason(error: Exception) -> str:
    text = str(error).split("\n", 1)[0]
    return text[:200] or type(error).__name__


def metadata(settings: DigitalOceanSettings, item: str) -> str:
    """One value of the droplet metadata service (`/metadata/v1/<item>`)."""
    url = f"{settings.metadata_url.rstrip('/')}/metadata/v1/{item}"
    try:
        with urllib.request.urlopen(url, timeout=settings.metadata_timeout) as answer:
            return str(answer.read().decode("utf-8").strip())
    except (OSError, urllib.error.URLError, UnicodeError) as error:
        raise CloudError(
            f"the droplet metadata service at {settings.metadata_url} did not answer for "
            f"{item} ({getattr(error, 'reason', error)}): on a droplet it always does; "
            "elsewhere set droplet_id and region in the driver settings",
            ErrorKind.UNREACHABLE,
        ) from None
