"""One OneFS session per driver: log in once, again only when refused or expired, log out.

The SDK's own ApiClient logs in again after 15 s without a request, whatever the cluster
says, and never logs out: with discovery every few seconds and a client per operation,
logins pile up on the cluster (which limits and logs them). `SessionClient` keeps the
session the cluster gave (`timeout_absolute`, `timeout_inactive` from its answer), sends
only the session cookie and the CSRF headers (never the password again), and `logout()`
ends the session at shutdown. A request the cluster refuses with 401 while the session
was thought alive is the caller's cue to `forget()` it and try once more (api.OneFs).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import isilon_sdk.v9_5_0 as isi  # type: ignore[import-untyped]

log = logging.getLogger(__name__)
SESSION_PATH = "/session/1/session"
MARGIN_SECONDS = 5.0  # renew this long before the cluster would end the session


class SessionClient(isi.ApiClient):  # type: ignore[misc]  # the SDK is untyped
    def __init__(self, configuration: Any) -> None:
        super().__init__(configuration)
        self._session_lock = threading.Lock()
        self._cookie: str | None = None
        self._csrf: str | None = None
        self._ends_at = 0.0  # timeout_absolute
        self._idle_ends_at = 0.0  # timeout_inactive, from the last request
        self._inactive = 0.0
        self.logins = 0  # sessions opened (tests and the log count them)
        self._closed = False  # logged out at shutdown: a call still running must not log in
        self.login_timeout = 20.0  # set by api.OneFs to the volume's timeout

    # the SDK calls this before every request ---------------------------------------------
    def update_params_for_auth(self, headers: dict[str, str], querys: Any, auth: Any) -> None:
        with self._session_lock:
            if self._closed:
                raise RuntimeError(f"the session with {self.configuration.host} ended at shutdown")
            now = time.monotonic()
            if self._cookie is None or now >= min(self._ends_at, self._idle_ends_at):
                self._login(now)
            self._idle_ends_at = now + self._inactive
            assert self._cookie is not None
            headers["Cookie"] = self._cookie
            if self._csrf:
                headers["Origin"] = self.configuration.host
                headers["X-CSRF-Token"] = self._csrf

    def forget(self) -> None:
        """The cluster refused the session: the next request logs in again."""
        with self._session_lock:
            self._cookie = None

    def logout(self) -> None:
        """End the session on the cluster (DELETE /session/1/session); errors only logged."""
        with self._session_lock:
            cookie, csrf, self._cookie = self._cookie, self._csrf, None
            self._closed = True
        if cookie is None:
            return
        headers = {"Cookie": cookie}
        if csrf:
            headers.update({"Origin": self.configuration.host, "X-CSRF-Token": csrf})
        try:
            self.rest_client.DELETE(
                self.configuration.host + SESSION_PATH, headers=headers, _request_timeout=10
            )
        except Exception as error:  # the cluster ends it by itself when it times out
            log.info("PowerScale %s: logging out failed: %s", self.configuration.host, error)

    # logging in ---------------------------------------------------------------------------
    def _login(self, now: float) -> None:
        config = self.configuration
        body = {
            "username": config.username,
            "password": config.password,
            "services": ["platform", "namespace"],
        }
        answer = self.rest_client.POST(
            config.host + SESSION_PATH,
            headers={"Content-Type": "application/json"},
            body=body,
            _request_timeout=self.login_timeout,
        )  # raises ApiException on a refusal (401): api.OneFs says what it means
        received = answer.getheaders()
        getlist = getattr(received, "getlist", None)
        cookies = _cookies(getlist("Set-Cookie") if getlist else [received.get("Set-Cookie", "")])
        session = json.loads(answer.data or "{}")
        self._cookie = f"isisessid={cookies.get('isisessid', '')}"
        self._csrf = cookies.get("isicsrf")
        self._ends_at = now + _less_margin(float(session.get("timeout_absolute", 14400)))
        self._inactive = _less_margin(float(session.get("timeout_inactive", 900)))
        self.logins += 1
        log.debug("PowerScale %s: logged in (session %d)", config.host, self.logins)


def _less_margin(seconds: float) -> float:
    return seconds - min(MARGIN_SECONDS, seconds / 10)


def _cookies(headers: list[str]) -> dict[str, str]:
    """name → value of each Set-Cookie header (urllib3 may also join them with commas)."""
    found = {}
    for header in headers:
        for part in header.split(","):
            first = part.split(";", 1)[0].strip()
            if "=" in first:
                name, value = first.split("=", 1)
                found[name.strip()] = value.strip()
    return found
