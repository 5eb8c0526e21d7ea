"""The instruments Orlop's layers count with: operations, provider API calls, background work.

Shared vocabulary (like the error types): core and backends import it, it imports nothing of
Orlop's. Counted always (a counter increment and a histogram observation per operation, a
few microseconds); exposed only when the `metrics` listener is on (see `orlop.ops.metrics`).

Cardinality is bounded: labels are driver names (from the config; another name counts as
"(unknown)"), operation names, error class names and provider kinds; never a volume option
or a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from orlop.ops.reachability import report as backend_outcome
from orlop.ops.reachability import waiting as backend_waiting

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_DRIVER = "(unknown)"  # a driver name not in the config: user input, not a label

# No `_created` series: half the page, and nothing an alert uses.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=False)

LATENCY = Histogram(
    "orlop_operation_duration_seconds",
    "Time to answer a volume operation, by driver and operation.",
    ["driver", "operation"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
PROVIDER_CALLS = Counter(
    "orlop_provider_api_calls_total",
    "Cloud provider API calls (each attempt), by provider and outcome "
    "(ok, or the kind of error: throttled and retryable ones are retried).",
    ["provider", "outcome"],
    registry=REGISTRY,
)
BACKGROUND_SUCCESS = Gauge(
    "orlop_background_last_success_timestamp_seconds",
    "When background work (recovery, discovery, ...) last finished without error.",
    ["work"],
    registry=REGISTRY,
)
BACKGROUND_FAILURES = Counter(
    "orlop_background_failures_total",
    "Rounds of background work that failed.",
    ["work"],
    registry=REGISTRY,
)
PROVIDER_RETRIES = Counter(
    "orlop_provider_api_retries_total",
    "Cloud provider API calls made again after a throttled or transient answer.",
    ["provider"],
    registry=REGISTRY,
)
FUSE_CLIENT_RESTARTS = Counter(
    "orlop_fuse_client_restarts_total",
    "Dead or hung network mounts (a FUSE client that died, a stale share) found at a mount "
    "or at recovery, unmounted and mounted again with a new client.",
    ["driver", "volume"],
    registry=REGISTRY,
)


def error_kind(error: BaseException) -> str:
    """An error's kind for a label: its class name (a bounded set, never its message)."""
    return type(error).__name__


# What `orlop status` shows: per background work its last result (per driver, whether its
# backend answers: `reachability`).
BACKGROUND: dict[str, dict[str, Any]] = {}
MEMORY_ONLY = frozenset({"get", "list", "path"})  # answered from memory: say nothing of it


def background_done(work: str, error: BaseException | None = None) -> None:
    now = time.time()
    last = BACKGROUND.setdefault(work, {"last_success": None, "last_failure": None})
    last["last_result"] = "ok" if error is None else f"failed: {error}"
    if error is None:
        BACKGROUND_SUCCESS.labels(work).set(now)
        last["last_success"] = now
    else:
        BACKGROUND_FAILURES.labels(work).inc()
        last["last_failure"] = now


class _Series:
    """One (driver, operation): its count and errors as plain ints (the hot path, a Get, is a
    memory read: a library counter's lock would cost more than the read), its latency
    histogram for operations that reach a backend; exported by `_OperationCollector`."""

    __slots__ = ("backend", "count", "driver", "errors", "latency", "operation")

    def __init__(self, driver: str, operation: str) -> None:
        self.driver = driver
        self.operation = operation
        self.count = 0
        self.errors: dict[str, int] = {}
        self.backend = operation not in MEMORY_ONLY and driver != UNKNOWN_DRIVER
        self.latency = LATENCY.labels(driver, operation) if self.backend else None

    def done(self, started: float, error: BaseException | None) -> None:
        self.count += 1
        if self.latency is not None:
            self.latency.observe(time.perf_counter() - started)
        if isinstance(error, asyncio.CancelledError):
            return
        if error is not None:
            kind = error_kind(error)
            self.errors[kind] = self.errors.get(kind, 0) + 1
        if self.backend:
            backend_outcome(self.driver, error, f"{self.operation} request")


# operation → driver → series
_SERIES: dict[str, dict[str, _Series]] = {}


def _series(service: Any, driver: str, operation: str) -> _Series:
    by_driver = _SERIES.setdefault(operation, {})
    series = by_driver.get(driver)
    if series is None:
        label = driver if driver in service.drivers else UNKNOWN_DRIVER
        series = by_driver.get(label) or _Series(label, operation)
        by_driver[label] = series
        if label == driver:
            by_driver[driver] = series
    return series


class _OperationCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        count = CounterMetricFamily(
            "orlop_operations",
            "Volume operations handled, by driver and operation.",
            labels=["driver", "operation"],
        )
        errors = CounterMetricFamily(
            "orlop_operation_errors",
            "Volume operations that failed, by driver, operation and kind of error.",
            labels=["driver", "operation", "kind"],
        )
        for operation, by_driver in list(_SERIES.items()):
            for driver, series in list(by_driver.items()):
                if driver != series.driver:
                    continue
                count.add_metric([driver, operation], series.count)
                for kind, errors_of_kind in list(series.errors.items()):
                    errors.add_metric([driver, operation, kind], errors_of_kind)
        yield count
        yield errors


REGISTRY.register(_OperationCollector())


def observed(operation: str) -> Callable[[F], F]:
    """Count (and, reaching a backend, time) a VolumeService method whose first argument
    is the driver name."""

    def decorate(method: F) -> F:
        if asyncio.iscoroutinefunction(method):

            @functools.wraps(method)
            async def run_async(self: Any, driver: str, *args: Any, **kwargs: Any) -> Any:
                series = _series(self, driver, operation)
                started = time.perf_counter()
                try:
                    result = await method(self, driver, *args, **kwargs)
                except BaseException as error:
                    series.done(started, error)
                    raise
                series.done(started, None)
                return result

            return cast(F, run_async)

        by_driver = _SERIES.setdefault(operation, {})

        @functools.wraps(method)
        def run(self: Any, driver: str, *args: Any, **kwargs: Any) -> Any:
            # memory only: no clock, no lock; a failure takes the slow path
            try:
                result = method(self, driver, *args, **kwargs)
            except BaseException as error:
                _series(self, driver, operation).done(0.0, error)
                raise
            series = by_driver.get(driver)
            if series is None:
                series = _series(self, driver, operation)
            series.count += 1
            return result

        return cast(F, run)

    return decorate


# Who else hears what a backend reports (a repair, a preemption): set by the core for each
# backend call (it makes them events); called as (kind, driver, volume, message).
NOTICE_LISTENER: contextvars.ContextVar[Callable[[str, str, str, str], None] | None] = (
    contextvars.ContextVar("orlop_notice_listener", default=None)
)


def _notice(kind: str, driver: str, volume: str, message: str) -> None:
    listener = NOTICE_LISTENER.get()
    if listener is not None:
        listener(kind, driver, volume, message)


def mount_repaired(driver: str, volume: str) -> None:
    """A backend found `volume`'s network mount dead or hung and mounts it again."""
    FUSE_CLIENT_RESTARTS.labels(driver, volume).inc()
    _notice(
        "repaired",
        driver,
        volume,
        f"volume {volume}'s network mount was dead or hung: mounted again",
    )


def volume_preempted(volume: str, holder: str) -> None:
    """A backend took `volume` from `holder` (another host), as preempt=true asks."""
    _notice("preempted", "", volume, f"volume {volume} taken from {holder} (preempt=true)")


def counted_provider_call(
    provider: str, function: Callable[[], T], driver: str | None = None, watch: str = ""
) -> Callable[[], T]:
    """`function`, counting each call's outcome under `provider` (a backend kind); the
    retry loop calls the result once per attempt, so every call after the first is a retry.
    Each attempt's outcome also tells `driver`'s reachability (a call retrying for a minute
    shows the backend down from its first failed attempt); with `watch` (what the call is:
    a read), an attempt that hangs marks it down too (`reachability.sweep`)."""
    attempts = 0

    def call() -> T:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            PROVIDER_RETRIES.labels(provider).inc()
        try:
            if watch and driver is not None:
                with backend_waiting(driver, watch):
                    result = function()
            else:
                result = function()
        except Exception as error:
            kind = getattr(error, "kind", None)
            PROVIDER_CALLS.labels(provider, str(kind) if kind else "failed").inc()
            if driver is not None:
                backend_outcome(driver, error, "provider call")
            raise
        PROVIDER_CALLS.labels(provider, "ok").inc()
        if driver is not None:
            backend_outcome(driver)
        return result

    return call


@dataclass(slots=True)
class WorkRuns:
    """One volume's runs of one kind of background work (exported by `orlop.ops.metrics`)."""

    ok: int = 0
    failed: int = 0
    last_success: float | None = None  # unix seconds
    last_duration: float | None = None  # seconds, of the last run, whatever its result
    period: float | None = None  # seconds a run is due every (a snapshot schedule's shortest)


# work → (driver, volume) → its runs; per volume work of a configured driver only
VOLUME_WORK: dict[str, dict[tuple[str, str], WorkRuns]] = {"snapshot_schedule": {}, "backup": {}}


@contextlib.contextmanager
def volume_work(
    work: str, driver: str, volume: str, period: float | None = None
) -> Iterator[WorkRuns]:
    """Count one run of `work` ("snapshot_schedule", "backup") on an existing volume of a
    configured driver: its result, its duration, when it last succeeded. A cancelled run
    (shutdown) is no result."""
    runs = VOLUME_WORK[work].setdefault((driver, volume), WorkRuns())
    runs.period = period
    started = time.perf_counter()
    try:
        yield runs
    except asyncio.CancelledError:
        raise
    except BaseException as error:
        runs.failed += 1
        runs.last_duration = time.perf_counter() - started
        background_done(work, error)
        backend_outcome(driver, error, work)
        raise
    runs.ok += 1
    runs.last_duration = time.perf_counter() - started
    runs.last_success = time.time()
    background_done(work)
    backend_outcome(driver, None, work)
