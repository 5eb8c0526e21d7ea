"""Per driver reachability: which outcomes say what, transitions, one log line each way."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from orlop.backends.cloud.api import CloudError, ErrorKind
from orlop.core.model import BackendError, Conflict, InvalidOption, NotFound
from orlop.ops import reachability
from orlop.ops.counters import counted_provider_call, volume_work
from tests.support.names import unique

pytestmark = pytest.mark.unit


@pytest.fixture
def driver() -> Iterator[str]:
    name = unique("reach")
    yield name
    reachability.forget(name)


def lines(caplog: pytest.LogCaptureFixture, driver: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "orlop.reachability" and driver in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (None, True),
        (CloudError("bad size", ErrorKind.INVALID), True),  # the cloud answered: refused
        (CloudError("no such disk", ErrorKind.NOT_FOUND), True),
        (CloudError("attached elsewhere", ErrorKind.IN_USE), True),
        (CloudError("slow down", ErrorKind.THROTTLED), True),
        (CloudError("no answer", ErrorKind.UNREACHABLE), False),
        (CloudError("500", ErrorKind.RETRYABLE), False),
        (CloudError("bad key", ErrorKind.CREDENTIALS), False),
        (BackendError("sshfs: connection refused"), False),
        (ConnectionRefusedError("refused"), False),
        (TimeoutError("timed out"), False),
        (InvalidOption("size=10X"), None),  # Orlop's own refusal: says nothing
        (NotFound("no volume v"), None),
        (Conflict("in use"), None),
        (asyncio.CancelledError(), None),
        (KeyError("a bug"), None),
    ],
)
def test_what_an_outcome_says(error: BaseException | None, said: bool | None) -> None:
    assert reachability.says(error) is said


def test_down_and_back_one_log_line_each_way(driver: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "orlop.reachability")
    assert reachability.state(driver) is None and not reachability.ever_answered(driver)
    reachability.report(driver, InvalidOption("x"))  # nothing: stays unknown
    assert reachability.state(driver) is None
    for attempt in range(5):
        reachability.report(driver, BackendError(f"endpoint down {attempt}"), "provider call")
    reach = reachability.state(driver)
    assert reach is not None and reach.up is False and reach.faults == 5
    assert reach.error == "endpoint down 4" and reach.source == "provider call"
    since = reach.since
    assert driver in reachability.down() and reachability.down([driver]) == [driver]
    assert not reachability.ever_answered(driver)
    reachability.report(driver, NotFound("no such volume"))  # says nothing: still down
    assert reachability.down([driver]) == [driver]
    (went_down,) = lines(caplog, driver)
    assert "backend DOWN (provider call): endpoint down 0" in went_down
    reachability.report(driver)
    reachability.report(driver)
    reach = reachability.state(driver)
    assert reach is not None and reach.up is True and reach.error == "" and reach.faults == 0
    assert reach.since is not None and since is not None and reach.since >= since
    assert reachability.ever_answered(driver) and reachability.down([driver]) == []
    went_down, came_back = lines(caplog, driver)
    assert "backend answers again" in came_back and "5 fault(s)" in came_back
    reachability.report(driver, CloudError("bad", ErrorKind.INVALID))  # an answer: still up
    assert len(lines(caplog, driver)) == 2


def test_provider_attempts_tell_the_driver(driver: str) -> None:
    answers = iter([CloudError("no answer", ErrorKind.UNREACHABLE), None])

    def flaky() -> str:
        error = next(answers)
        if error is not None:
            raise error
        return "ok"

    call = counted_provider_call("ebs", flaky, driver)
    with pytest.raises(CloudError):
        call()
    assert reachability.down([driver]) == [driver]  # at the first failed attempt
    assert call() == "ok"
    assert reachability.down([driver]) == [] and reachability.ever_answered(driver)
    counted_provider_call("ebs", lambda: 1)()  # no driver: tells nobody


def test_background_work_tells_the_driver(driver: str) -> None:
    with pytest.raises(BackendError), volume_work("snapshot_schedule", driver, "v"):
        raise BackendError("snapshot: cluster unreachable")
    reach = reachability.state(driver)
    assert reach is not None and reach.up is False and reach.source == "snapshot_schedule"
    with volume_work("snapshot_schedule", driver, "v"):
        pass
    assert reachability.down([driver]) == []


def test_a_watched_call_that_hangs_marks_the_backend_down(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orlop.reachability")
    with reachability.waiting(driver, "ebs get disk"):
        assert reachability.sweep(slow=0.2) == []  # not long enough yet
        time.sleep(0.3)
        assert reachability.sweep(slow=0.2) == [driver]
        reach = reachability.state(driver)
        assert reach is not None and reach.up is False and reach.source == "no answer"
        assert reach.error.startswith("no answer for ") and "(ebs get disk)" in reach.error
        assert reachability.sweep(slow=0.2) == []  # down already: one line, not one a sweep
    assert len(lines(caplog, driver)) == 1
    reachability.report(driver)  # the call came back
    assert reachability.down([driver]) == []


def test_a_slow_call_of_a_backend_that_answers_meanwhile_is_no_hang(driver: str) -> None:
    with reachability.waiting(driver, "discovery"):
        time.sleep(0.3)
        reachability.report(driver)  # another call got an answer after this one began
        assert reachability.sweep(slow=0.2) == []
    assert reachability.down([driver]) == []
