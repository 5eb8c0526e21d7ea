"""KeptSession's decisions without a gateway: when it logs in, when it keeps the token."""

from __future__ import annotations

import pytest

from orlop.backends.cloud.powerflex import session as session_module
from orlop.backends.cloud.powerflex.session import KeptSession


class Token:
    def __init__(self) -> None:
        self.value = ""

    def get(self) -> str:
        return self.value

    def set(self, value: str) -> None:
        self.value = value


class Auth:
    """PyPowerFlex's Request, as far as the session uses it: records the logins."""

    def __init__(self, version: str) -> None:
        self.token = Token()
        self.version = version
        self.calls: list[str] = []

    def _login(self) -> None:
        self.calls.append("login")
        self.token.set(f"t{len(self.calls)}")

    def _appliance_login(self) -> None:
        self.calls.append("appliance-login")
        self.token.set(f"t{len(self.calls)}")

    def _logout(self) -> None:
        self.calls.append("logout")

    def _appliance_logout(self) -> None:
        self.calls.append("appliance-logout")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(session_module.time, "monotonic", lambda: now[0])
    return now


def kept(version: str, monkeypatch: pytest.MonkeyPatch) -> tuple[KeptSession, Auth]:
    auth = Auth(version)
    session = KeptSession(auth)
    monkeypatch.setattr(session, "_ask_version", lambda: auth.version)
    return session, auth


def test_3x_keeps_its_token_until_ten_minutes_unused(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    session, auth = kept("3.6", monkeypatch)
    for _ in range(50):
        assert session.login() == "3.6"
        session.logout("3.6")
        clock[0] += 60  # one request a minute: never idle long
    assert auth.calls == ["login"]
    clock[0] += 9 * 60  # unused past the idle limit: a new login, the old session ended
    session.login()
    assert auth.calls == ["login", "logout", "login"]


def test_4x_asks_the_version_once_and_renews_before_the_access_token_ends(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    session, auth = kept("4.5", monkeypatch)
    session.login()
    assert auth.calls == ["login", "logout", "appliance-login"]
    clock[0] += 200
    session.login()
    assert len(auth.calls) == 3
    clock[0] += 100  # 300 s old: past what a 4.x access token lives
    session.login()
    assert auth.calls[3:] == ["appliance-logout", "appliance-login"]


def test_a_refused_kept_token_is_forgotten_a_refused_fresh_one_is_not_retried(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    session, auth = kept("3.6", monkeypatch)
    session.login()
    before = session.logins
    assert session.refused(before) is True and auth.token.get() == ""
    session.login()  # the retry logs in anew
    assert session.refused(before) is False  # that fresh token refused too: give up


def test_close_logs_out_once(clock: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    session, auth = kept("4.5", monkeypatch)
    session.close()  # never logged in: nothing to end
    assert auth.calls == []
    session.login()
    session.close()
    session.close()
    assert auth.calls.count("appliance-logout") == 1 and auth.token.get() == ""
