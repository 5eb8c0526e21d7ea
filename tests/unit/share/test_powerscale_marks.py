"""PowerScale's quota marks (creating / ready / kept) and the session's cookie parsing."""

from __future__ import annotations

import pytest

from orlop.backends.share.powerscale.client import _cookies
from orlop.backends.share.powerscale.labels import Mark


@pytest.mark.parametrize(
    "mark",
    [
        Mark("Db.Main_2", "creating", keep=True, token="ab12"),
        Mark("v", "ready"),
        Mark("v-1", "kept", keep=True),
    ],
)
def test_marks_read_back_as_written(mark: Mark) -> None:
    assert Mark.parse(mark.text()) == mark


@pytest.mark.parametrize(
    "description", ["", "orlop volume", "made by hand", "orlop volume=v state=gone", "orlop x=1"]
)
def test_a_description_without_a_mark_is_none(description: str) -> None:
    assert Mark.parse(description) is None


def test_session_cookies_from_one_or_several_headers() -> None:
    joined = "isisessid=s1; path=/; HttpOnly; Secure, isicsrf=c1; path=/; Secure"
    assert _cookies([joined]) == {"isisessid": "s1", "isicsrf": "c1"}
    apart = ["isisessid=s2; path=/", "isicsrf=c2; Expires=Wed, 21 Oct 2026 07:28:00 GMT"]
    assert _cookies(apart) == {"isisessid": "s2", "isicsrf": "c2"}


def test_a_session_closed_at_shutdown_never_logs_in_again() -> None:
    """A backend call still running when the daemon stops must not open a new session
    behind the logout (it would be left open on the cluster)."""
    import isilon_sdk.v9_5_0 as isi  # type: ignore[import-untyped]

    from orlop.backends.share.powerscale.client import SessionClient

    config = isi.Configuration()
    config.host = "https://cluster.invalid:8080"
    client = SessionClient(config)
    client.logout()  # no session yet: nothing to end, but the client is closed
    with pytest.raises(RuntimeError, match="ended at shutdown"):
        client.update_params_for_auth({}, [], None)
    assert client.logins == 0
