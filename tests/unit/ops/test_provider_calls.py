"""Provider API attempts counted at the cloud layer's one call wrapper (`CloudCalls.call`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest

from orlop.backends.cloud.api import CloudError, CloudSettings, ErrorKind
from orlop.backends.cloud.calls import CloudCalls
from orlop.ops.counters import REGISTRY
from tests.support.names import unique
from tests.support.scrape import samples, value

pytestmark = pytest.mark.unit


def test_throttled_attempts_and_retries_are_counted() -> None:
    provider = unique("fakecloud")
    cloud: Any = SimpleNamespace(kind=provider, disk_word="disk", refuses_second_attach=False)
    settings = CloudSettings.parse(provider, {"api_retry_base": 0.001, "api_retry_cap": 0.001})
    answers = iter([CloudError("slow down", ErrorKind.THROTTLED), None])

    def flaky() -> str:
        error = next(answers)
        if error is not None:
            raise error
        return "done"

    calls = CloudCalls(cloud, settings)
    assert calls.call("list disks", flaky, repeatable=True) == "done"
    with pytest.raises(CloudError):
        calls.call("create disk", _refused)
    page = samples(generate_latest(REGISTRY).decode())
    counts = {"ok": 1, "throttled": 1, "invalid": 1, "retryable": 0}
    for outcome, count in counts.items():
        labels = {"provider": provider, "outcome": outcome}
        assert value(page, "orlop_provider_api_calls_total", **labels) == count
    assert "token=abc" not in generate_latest(REGISTRY).decode()


def _refused() -> None:
    raise CloudError("size too large: token=abc", ErrorKind.INVALID)
