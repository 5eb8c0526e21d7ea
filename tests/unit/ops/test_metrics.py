"""Metrics after real operations on a VolumeService, read back with prometheus_client's parser."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from orlop.backends.base import BackendContext
from orlop.config import load_config
from orlop.core.model import BackendError, ConfigError, Conflict, InvalidOption, NotFound, Usage
from orlop.ops.counters import REGISTRY, counted_provider_call
from orlop.ops.listener import MetricsListener
from orlop.ops.metrics import MetricsExporter
from tests.support.harness import Harness
from tests.support.memory_backend import MemoryBackend
from tests.support.names import unique
from tests.support.scrape import Page, fetch, samples, value

pytestmark = pytest.mark.unit


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    backend = MemoryBackend(BackendContext("mem", "/nonexistent"))
    harness = Harness(backend, unique("drv"), store_path=str(tmp_path / "orlop.db"))
    yield harness
    harness.close()


def scrape(harness: Harness) -> Page:
    return samples(MetricsExporter(harness.service).render().decode())


def test_operations_counted_and_timed(harness: Harness) -> None:
    d = harness.driver
    harness.create("v", size="1G")
    harness.mount("v")
    harness.service.get(d, "v")
    page = scrape(harness)
    for operation in ("create", "mount", "get"):
        assert value(page, "orlop_operations_total", driver=d, operation=operation) == 1
        timed = value(page, "orlop_operation_duration_seconds_count", driver=d, operation=operation)
        assert timed == (0 if operation == "get" else 1)  # a Get is a memory read: not timed
    assert value(page, "orlop_operation_duration_seconds_sum", driver=d, operation="create") > 0
    assert value(page, "orlop_volume_mounts", driver=d, volume="v") == 1
    assert value(page, "orlop_volume_attached", driver=d, volume="v") == 1
    assert value(page, "orlop_volumes", driver=d) == 1
    harness.unmount("v")
    page = scrape(harness)
    assert value(page, "orlop_volume_attached", driver=d, volume="v") == 0
    assert value(page, "orlop_operations_total", driver=d, operation="unmount") == 1


def test_failed_create_counts_an_error_of_its_kind(harness: Harness) -> None:
    d = harness.driver
    harness.backend.fail["create"] = "disk on fire"  # type: ignore[attr-defined]
    with pytest.raises(BackendError):
        harness.create("broken")
    with pytest.raises(InvalidOption):
        harness.create("bad", size="10X")
    page = scrape(harness)
    assert value(page, "orlop_operations_total", driver=d, operation="create") == 2
    kinds = {"BackendError": 1, "InvalidOption": 1, "Conflict": 0}
    for kind, count in kinds.items():
        assert (
            value(page, "orlop_operation_errors_total", driver=d, operation="create", kind=kind)
            == count
        )


def test_unknown_driver_is_not_a_label(harness: Harness) -> None:
    name = unique("nosuch")
    with pytest.raises(NotFound):
        harness.service.get(name, "v")
    text = MetricsExporter(harness.service).render().decode()
    assert name not in text
    assert (
        value(
            samples(text),
            "orlop_operation_errors_total",
            driver="(unknown)",
            operation="get",
            kind="NotFound",
        )
        >= 1
    )


def test_no_secret_in_any_sample(harness: Harness) -> None:
    harness.create("s", password="hunter2-secret")
    with pytest.raises(Conflict):
        harness.create("s", password="other-secret")
    text = MetricsExporter(harness.service).render().decode()
    assert "secret" not in text and "hunter2" not in text
    assert value(samples(text), "orlop_volume_mounts", driver=harness.driver, volume="s") == 0


def test_volume_usage_from_memory(harness: Harness) -> None:
    volume = harness.create("u")
    volume.usage = Usage(used=300, size=1000, free=700)  # as the usage meter records it
    page = scrape(harness)
    key = {"driver": harness.driver, "volume": "u"}
    assert value(page, "orlop_volume_size_bytes", **key) == 1000
    assert value(page, "orlop_volume_used_bytes", **key) == 300
    assert value(page, "orlop_volume_free_bytes", **key) == 700


def test_provider_calls_by_outcome() -> None:
    class Throttled(Exception):
        kind = "throttled"

    provider = unique("prov")

    def throttled() -> None:
        raise Throttled("slow down")

    counted_provider_call(provider, lambda: 1)()
    with pytest.raises(Throttled):
        counted_provider_call(provider, throttled)()
    page = samples(generate_latest(REGISTRY).decode())
    assert value(page, "orlop_provider_api_calls_total", provider=provider, outcome="ok") == 1
    assert (
        value(page, "orlop_provider_api_calls_total", provider=provider, outcome="throttled") == 1
    )


async def _get(address: str, path: str, method: str = "GET") -> tuple[int, str]:
    return await asyncio.to_thread(fetch, address, path, method)


def test_listener_serves_metrics_healthz_over_unix_and_tcp(tmp_path: Path) -> None:
    healthy = {"now": True}

    def health() -> tuple[bool, dict[str, str]]:
        return healthy["now"], {"status": "ok" if healthy["now"] else "down"}

    async def run() -> None:
        for address in (str(tmp_path / "metrics.sock"), "127.0.0.1:0"):
            listener = MetricsListener(address, lambda: b"orlop_up 1\n", health)
            await listener.start()
            try:
                bound = listener.bound
                assert await _get(bound, "/metrics") == (200, "orlop_up 1\n")
                assert (await _get(bound, "/healthz"))[0] == 200
                healthy["now"] = False
                assert await _get(bound, "/healthz") == (503, '{"status": "down"}\n')
                healthy["now"] = True
                assert (await _get(bound, "/other"))[0] == 404
                assert (await _get(bound, "/metrics", "POST"))[0] == 405
            finally:
                await listener.close()
        assert not (tmp_path / "metrics.sock").exists()

    asyncio.run(run())


@pytest.mark.parametrize(
    "address", ["9450", "localhost", "host:port", "relative/path.sock", ":9450", "h:70000"]
)
def test_bad_metrics_address_is_refused(tmp_path: Path, address: str) -> None:
    config = tmp_path / "orlop.yaml"
    config.write_text(f"metrics: '{address}'\ndrivers: {{d: {{backend: directory}}}}\n")
    with pytest.raises(ConfigError, match=r"metrics.*HOST:PORT.*unix socket"):
        load_config(str(config), environ={})


def test_metrics_off_by_default(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.yaml")
    assert load_config(environ={}).metrics is None or missing  # the embedded default: off
    environ = {"ORLOP_METRICS": "[::1]:9450"}
    assert load_config(environ=environ).metrics == "[::1]:9450"
