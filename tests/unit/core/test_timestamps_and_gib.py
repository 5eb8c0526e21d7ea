"""The one RFC 3339 helper and the one GiB rounding every backend uses."""

from __future__ import annotations

import datetime
import re

import pytest

from orlop.core.model import rfc3339
from orlop.core.options import GIB, canonical_gib_size, whole_gib

RFC3339_UTC = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


def test_rfc3339_takes_a_datetime_an_epoch_or_now() -> None:
    berlin = datetime.timezone(datetime.timedelta(hours=1))
    assert rfc3339(datetime.datetime(2026, 12, 7, 13, 0, 5, 999, tzinfo=berlin)) == (
        "2026-12-07T12:00:05Z"
    )
    assert rfc3339(datetime.datetime(2026, 12, 7, 12, 0, 5)) == "2026-12-07T12:00:05Z"
    assert rfc3339(1_796_644_805) == "2026-12-07T12:00:05Z"
    assert rfc3339(1_796_644_805.75) == "2026-12-07T12:00:05Z"
    now = rfc3339()
    assert RFC3339_UTC.match(now)
    parsed = datetime.datetime.strptime(now, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert abs((datetime.datetime.now(datetime.UTC) - parsed).total_seconds()) < 5


@pytest.mark.parametrize(
    ("size", "gib"), [(1, 1), (GIB - 1, 1), (GIB, 1), (GIB + 1, 2), (10 * GIB, 10)]
)
def test_whole_gib_rounds_up(size: int, gib: int) -> None:
    assert whole_gib(size) == gib


def test_canonical_gib_size_rounds_up_to_whole_gib() -> None:
    assert canonical_gib_size("1.5G") == str(2 * GIB)
    assert canonical_gib_size("10G") == str(10 * GIB)
