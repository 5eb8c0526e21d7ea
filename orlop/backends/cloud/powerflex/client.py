"""PowerFlex gateway calls through `PyPowerFlex`, each failure a CloudError.

PyPowerFlex would log in and out around every request (API 3.x: `GET /api/login` with the
password, Basic auth with the token after; 4.x: `POST /rest/auth/login`, a bearer token);
the client here keeps one login for the token's lifetime instead (`session.py`), logs in
again when the gateway refuses the token, and out at `close` (or at exit). The token lives
on the client, so calls are serialised here. Its failures are plain exceptions whose message
carries the gateway's answer (`{"message": …, "httpStatusCode": 500, "errorCode": …}`), or
the `requests` error as the cause; `Gateway.call` turns both into the layer's error kinds.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from orlop.backends.cloud.api import CloudError, ErrorKind
from orlop.backends.cloud.powerflex.session import KeptSession, kept_client
from orlop.backends.cloud.powerflex.settings import PowerFlexSettings as PowerFlexSettings
from orlop.core.model import rfc3339

T = TypeVar("T")

# PowerFlex error codes (from its REST API reference) worth a kind of their own.
_NOT_FOUND_CODES = {79, 80, 81, 94, 101, 102, 103, 127, 210}  # could not find …
_NOT_FOUND_TEXT = re.compile(r"could not find|not found|does not exist", re.IGNORECASE)
_IN_USE_TEXT = re.compile(r"already mapped|is mapped|mapped to", re.IGNORECASE)


def read_password(settings: PowerFlexSettings) -> str:
    path = Path(settings.password_file)
    try:
        password = path.read_text(encoding="utf-8").rstrip("\n")
    except OSError as error:
        raise CloudError(
            f"cannot read the PowerFlex password_file {path}: {error.strerror}",
            ErrorKind.CREDENTIALS,
        ) from None
    if not password:
        raise CloudError(f"the PowerFlex password_file {path} is empty", ErrorKind.CREDENTIALS)
    return password


class Gateway:
    """One initialised PyPowerFlex client with one kept login; `call` runs one operation."""

    def __init__(self, settings: PowerFlexSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._session: KeptSession | None = None
        self._lock = threading.RLock()
        self._closer: weakref.finalize[Any, Any] | None = None

    def call(self, what: str, operation: Callable[[Any], T]) -> T:
        with self._lock:
            try:
                return self._call(operation)
            except CloudError:
                raise
            except Exception as error:
                raise self.error(what, error) from None

    def _call(self, operation: Callable[[Any], T]) -> T:
        if self._client is None:
            self._connect()
        assert self._session is not None
        logins = self._session.logins
        try:
            return operation(self._client)
        except Exception as error:
            refused = self.error("", error).kind is ErrorKind.CREDENTIALS
            if not (refused and self._session.refused(logins)):
                raise
        return operation(self._client)  # the kept token was refused: once with a new login

    def _connect(self) -> None:
        host, port = self.settings.address()
        verify = self.settings.verify
        client, session = kept_client(
            gateway_address=host,
            gateway_port=port,
            username=self.settings.username,
            password=read_password(self.settings),
            verify_certificate=verify,
            certificate_path=self.settings.ca_file if verify else None,
            timeout=self.settings.api_timeout,
        )
        self._session = session  # before initialize: its requests log in through it
        if self._closer is not None:
            self._closer()  # a connect that failed before: end what it began
        self._closer = weakref.finalize(self, session.close)  # at exit, if not closed
        client.initialize()
        self._client = client

    def close(self) -> None:
        """Log out of the gateway (the next call logs in again)."""
        with self._lock:
            if self._closer is not None:
                self._closer()
            self._client = self._session = self._closer = None

    def error(self, what: str, error: Exception) -> CloudError:
        import requests

        cause = error if isinstance(error, requests.RequestException) else error.__cause__
        gateway = self.settings.gateway
        if isinstance(cause, requests.exceptions.SSLError):
            return CloudError(
                f"{what}: the PowerFlex gateway {gateway} failed TLS verification: give the CA "
                "that signed its certificate in ca_file (or verify: false, not advised)",
                ErrorKind.CREDENTIALS,
            )
        if isinstance(cause, requests.exceptions.Timeout):
            return CloudError(
                f"{what}: no answer from the PowerFlex gateway {gateway} within "
                f"{self.settings.api_timeout:g}s",
                ErrorKind.UNREACHABLE,
            )
        if isinstance(cause, requests.exceptions.ConnectionError):
            return CloudError(
                f"{what}: the PowerFlex gateway {gateway} did not answer", ErrorKind.UNREACHABLE
            )
        status = getattr(getattr(cause, "response", None), "status_code", None)
        text = str(error)
        if status in (401, 403) or "Unauthorized" in text or "PowerFlex token" in text:
            return CloudError(
                f"{what}: the PowerFlex gateway {gateway} refused user "
                f"{self.settings.username}: check username and password_file",
                ErrorKind.CREDENTIALS,
            )
        code = _error_code(text)
        if code in _NOT_FOUND_CODES or _NOT_FOUND_TEXT.search(text):
            kind = ErrorKind.NOT_FOUND
        elif _IN_USE_TEXT.search(text):
            kind = ErrorKind.IN_USE
        elif "httpStatusCode': 5" in text and code is None:
            kind = ErrorKind.RETRYABLE
        else:
            kind = ErrorKind.FAILED
        return CloudError(f"{what}: {_message(text)}", kind, str(code or ""))


def _error_code(text: str) -> int | None:
    match = re.search(r"'errorCode': (\d+)", text)
    return int(match.group(1)) if match else None


def _message(text: str) -> str:
    """The gateway's own message when the exception text carries its answer."""
    match = re.search(r"'message': '([^']*)'", text) or re.search(r'"message": "([^"]*)"', text)
    return match.group(1) if match else text[:300]


def rfc3339_of(epoch: Any) -> str | None:
    """PowerFlex's epoch seconds as RFC 3339; None if it sent none."""
    try:
        return rfc3339(int(epoch))
    except (TypeError, ValueError, OverflowError):
        return None
