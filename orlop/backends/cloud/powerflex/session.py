"""One PowerFlex login per token lifetime, for a PyPowerFlex client.

PyPowerFlex logs in before every request and out after it (on API 3.x it even logs in
twice: once to ask the version, once for the request), and gateways limit and log logins.
`kept_client` builds a client whose entities share one `KeptSession` instead: it logs in
when there is no token or the one it has is near its end (3.x: 8 hours, or 10 minutes
unused; 4.x: a 5-minute access token), keeps the token across requests, and logs out only
in `close`. A token the gateway refuses before then is forgotten (`refused`): the caller
logs in again once and repeats the request (a refused request did nothing).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

# Renew before the gateway ends a session: (most age, most time unused) in seconds.
_V3_LIMITS = (7 * 3600.0, 8 * 60.0)  # 3.x: 8 hours, 10 minutes idle
_V4_LIMITS = (4 * 60.0, 4 * 60.0)  # 4.x: access tokens expire after 300 s


class KeptSession:
    """The login state of one client; `login` and `logout` replace PyPowerFlex's own."""

    def __init__(self, auth: Any) -> None:
        self._auth = auth  # a PyPowerFlex Request sharing the client's token
        self._lock = threading.RLock()
        self.version: str | None = None
        self.logins = 0  # logins tried, so a caller can tell a fresh token from a kept one
        self._since = self._used = 0.0

    def login(self) -> str:
        """The API version, with a live token on the shared token object."""
        with self._lock:
            now = time.monotonic()
            if self.version is None or not self._auth.token.get() or self._worn(now):
                self._renew()
                self._since = now
            self._used = now
            assert self.version is not None
            return self.version

    def logout(self, version: str) -> None:
        """After a request: the token is kept."""

    def refused(self, logins_before: int) -> bool:
        """The gateway refused the token: forget it. True if the refused token was a kept
        one (worth one more try with a new login), False if it was fresh."""
        with self._lock:
            if self.logins != logins_before:
                return False
            self._auth.token.set("")
            return True

    def close(self) -> None:
        """Log out (best effort: the gateway ends the session itself later)."""
        with self._lock:
            if not self._auth.token.get() or self.version is None:
                return
            try:
                self._end(self.version)
            except Exception as error:
                log.debug("PowerFlex logout: %s", error)
            self._auth.token.set("")

    def _worn(self, now: float) -> bool:
        assert self.version is not None
        most_age, most_idle = _V3_LIMITS if _is_v3(self.version) else _V4_LIMITS
        return now - self._since > most_age or now - self._used > most_idle

    def _renew(self) -> None:
        self.logins += 1  # counted before it is tried: a refused login is not retried
        if self._auth.token.get() and self.version is not None:
            with contextlib.suppress(Exception):  # an old token: end it if it still lives
                self._end(self.version)
            self._auth.token.set("")
        if self.version is None:
            # The 3.x login answers the version question on every gateway; a 4.x gateway
            # then wants its own login, and the 3.x session is ended first.
            self._auth._login()
            self.version = self._ask_version()
            if _is_v3(self.version):
                return
            with contextlib.suppress(Exception):  # best effort: it expires by itself
                self._auth._logout()
        if _is_v3(self.version):
            self._auth._login()
        else:
            self._auth._appliance_login()

    def _end(self, version: str) -> None:
        if _is_v3(version):
            self._auth._logout()
        else:
            self._auth._appliance_logout()

    def _ask_version(self) -> str:
        import requests

        auth, config = self._auth, self._auth.configuration
        answer = requests.get(
            f"{auth.base_url}/version",
            auth=(config.username, auth.token.get()),
            verify=auth.verify_certificate,
            timeout=config.timeout,
        )
        answer.raise_for_status()
        return str(answer.json())


def _is_v3(version: str) -> bool:
    return version < "4.0"  # PyPowerFlex's own test (utils.is_version_3)


def kept_client(**arguments: Any) -> tuple[Any, KeptSession]:
    """An uninitialised PowerFlexClient (PyPowerFlex's arguments) whose every entity logs
    in through one KeptSession."""
    from PyPowerFlex import PowerFlexClient  # type: ignore[import-untyped]
    from PyPowerFlex.base_client import Request  # type: ignore[import-untyped]

    class KeptClient(PowerFlexClient):  # type: ignore[misc]
        # PyPowerFlex adds each entity (system, volume, sdc, …) through this private
        # method; the override gives each one the kept session's login and logout.
        def _PowerFlexClient__add_storage_entity(self, attr_name: str, kind: Any) -> None:
            entity = kind(self.token, self.configuration)
            entity.login, entity.logout = session.login, session.logout
            setattr(self, attr_name, entity)

    client = KeptClient(**arguments)
    session = KeptSession(Request(client.token, client.configuration))
    return client, session
