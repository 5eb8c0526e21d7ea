"""`orlop serve`: wire config → backends → service → sockets, and run until SIGTERM.

Sockets listen before crash recovery runs, so Docker is answered within a second even on
a host with thousands of volumes; recovery takes each volume's lock, so a Mount that
arrives meanwhile waits for that volume's repair and no longer. Under systemd's socket
activation (orlop.socket) the sockets listen before the daemon even starts: calls wait in
their backlog until it takes them (orlop.ops.activation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from typing import Any

from orlop.backends import backend_class, make_backend
from orlop.backends.base import BackendContext
from orlop.config import Config, CsiConfig
from orlop.core.boot import BootWait
from orlop.core.events import EventJournal
from orlop.core.model import ConfigError
from orlop.core.service import Driver, VolumeService
from orlop.core.store import Store
from orlop.frontends.admin.api import AdminApi
from orlop.frontends.docker.plugin import DockerPlugin
from orlop.frontends.http import HttpServer, adopt_socket
from orlop.ops import activation, notify
from orlop.ops.counters import background_done
from orlop.ops.health import daemon_status, healthz
from orlop.ops.listener import MetricsListener
from orlop.ops.logs import LogFormat, setup_logging
from orlop.ops.metrics import MetricsExporter
from orlop.ops.reachability import report as backend_outcome
from orlop.ops.reachability import sweep as find_hung_backends
from orlop.ops.reachability import waiting as backend_waiting

log = logging.getLogger("orlop")

STOP_GRACE_SECONDS = 20.0
EVENTS_FILE = "events.jsonl"  # the events journal, in the state directory (core.events)
TRASH_SWEEP_INTERVAL = 60.0  # seconds between sweeps of the trash for expired volumes
SCHEDULE_INTERVAL = 60.0  # seconds between rounds of scheduled snapshots (hourly at best)


def build_drivers(config: Config) -> list[Driver]:
    drivers = []
    for name, driver_config in config.drivers.items():
        check_settings(name, driver_config.backend, driver_config.settings)
        context = BackendContext(
            driver=name,
            state_dir=config.driver_state_dir(name),
            defaults=dict(driver_config.options),
            settings=dict(driver_config.settings),
        )
        backend = make_backend(driver_config.backend, context)
        # Check the driver's defaults now: a bad config fails at start, not at first use.
        backend.options.validate({}, driver_config.options)
        trash = driver_config.trash_seconds
        drivers.append(Driver(name, backend, dict(driver_config.options), trash))
    return drivers


def check_settings(driver: str, kind: str, settings: Mapping[str, Any]) -> None:
    """Stop the daemon on a settings block its backend does not accept (a misspelt key)."""
    try:
        backend_class(kind).settings_model.parse(kind, settings)
    except ConfigError as error:
        raise ConfigError(f"driver {driver}: {error}") from None


def redacted_settings(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A driver's settings as configured, every secret one replaced, for `driver ls`."""
    secret = backend_class(kind).settings_model.secret_names()
    return {key: "<redacted>" if key in secret else value for key, value in settings.items()}


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        # Taken first, before anything could start a process that would inherit them.
        self._activated = activation.listen_fds()
        for name, driver in config.drivers.items():  # before anything is made on disk
            check_settings(name, driver.backend, driver.settings)
        os.makedirs(config.state_dir, mode=0o700, exist_ok=True)
        self.store = Store(config.database)
        events = EventJournal(os.path.join(config.state_dir, EVENTS_FILE))
        self.service = VolumeService(self.store, build_drivers(config), events=events)
        self.service.boot = BootWait()  # boot order: see orlop.core.boot
        self.servers: list[HttpServer] = []
        self.metrics: MetricsListener | None = None
        self.recovery: asyncio.Future[None] | None = None
        self.csi_servers: list[Any] = []  # CsiServer: imported only when csi is configured
        self._stop = asyncio.Event()

    def describe_driver(self, name: str) -> dict[str, Any]:
        driver = self.service.driver(name)
        backend = driver.backend
        return {
            "name": name,
            "backend": driver.kind,
            "socket": self.config.socket_path(name),
            "capabilities": backend.capabilities.as_dict(),
            "defaults": backend.options.redact(driver.defaults),
            "settings": redacted_settings(driver.kind, self.config.drivers[name].settings),
            "options": sorted(backend.options.options),
            "volumes": len(self.service.list(name)),
        }

    def adopt_activated_sockets(self) -> None:
        """Serve on the sockets systemd passed (orlop.socket) instead of binding anew."""
        drivers = {name: self.config.socket_path(name) for name in self.config.drivers}
        passed, self._activated = self._activated, []
        sockets = activation.sockets_by_path(passed, drivers, self.config.admin_socket)
        for path, sock in sockets.items():
            adopt_socket(path, sock, keep_path=True)

    async def start(self) -> None:
        self.adopt_activated_sockets()
        admin_api = AdminApi(self.service, self.describe_driver, self.status)
        admin = HttpServer(admin_api.routes(), root_only=True)
        await admin.start(self.config.admin_socket, mode=0o600)
        self.servers.append(admin)
        for name in self.service.drivers:
            server = HttpServer(DockerPlugin(self.service, name).routes())
            await server.start(self.config.socket_path(name), mode=0o600)
            self.servers.append(server)
            log.info("driver %s listening on %s", name, server.path)
        if self.config.metrics:
            exporter = MetricsExporter(self.service)
            self.metrics = MetricsListener(self.config.metrics, exporter.render, self.health)
            await self.metrics.start()
        if self.config.csi is not None:
            await self._start_csi(self.config.csi)
        log.info("orlop ready (%s, state in %s)", self.config.source, self.config.state_dir)

    def recovery_state(self) -> str:
        recovery = self.recovery
        if recovery is None or not recovery.done():
            return "running"
        return "failed" if recovery.cancelled() or recovery.exception() else "done"

    def serving(self) -> dict[str, bool]:
        paths = {server.path for server in self.servers}
        return {name: self.config.socket_path(name) in paths for name in self.service.drivers}

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For /healthz: see orlop.ops.health."""
        return healthz(self.service, self.recovery_state(), self.serving())

    async def status(self) -> dict[str, Any]:
        """For `orlop status`: see orlop.ops.health."""
        metrics = self.metrics.bound if self.metrics is not None else None
        return daemon_status(self.service, self.recovery_state(), self.serving(), metrics)

    async def _start_csi(self, csi: CsiConfig) -> None:
        from orlop.frontends.csi.frontend import csi_server, host_identity

        for name, driver in self.service.drivers.items():
            instance, zone = await host_identity(driver.backend)
            node_id = csi.node_id or instance
            server = csi_server(
                self.service, name, node_id, self.config.state_dir, zone, csi.stage_wait
            )
            await server.start(self.config.csi_socket_path(name))
            self.csi_servers.append(server)
            log.info("driver %s: CSI on unix://%s (node %s)", name, server.path, node_id)

    async def stop(self) -> None:
        """Close and remove sockets; mounts that containers still use stay mounted."""
        if self.metrics is not None:
            await self.metrics.close()
        for server in self.servers:
            await server.close()
        self.servers.clear()
        for csi_server in self.csi_servers:
            await csi_server.close()
        self.csi_servers.clear()
        # Let operations already under way finish and be recorded; what does not finish in
        # time is repaired by recovery at the next start.
        if not await self.service.drain(STOP_GRACE_SECONDS):
            log.warning("stopping with operations still in flight; the next start repairs them")
        self.service.close()
        self.store.close()
        log.info("orlop stopped")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self.start()
            recovery = self.recovery = asyncio.ensure_future(self.service.recover())
            recovery.add_done_callback(_log_failure)
            recovery.add_done_callback(self._tell_systemd_ready)
            measuring = asyncio.ensure_future(self.service.measure_all(self.config.usage_interval))
            discovery = asyncio.ensure_future(self._discover_forever(recovery))
            scheduling = asyncio.ensure_future(self._schedule_forever(recovery))
            pinging = asyncio.ensure_future(_ping_watchdog())
            watching = asyncio.ensure_future(_watch_backends())
            sweeping = asyncio.ensure_future(self._sweep_trash_forever(recovery))
            await self._stop.wait()
            notify.notify("STOPPING=1")
            pinging.cancel()
            watching.cancel()
            sweeping.cancel()
            measuring.cancel()
            discovery.cancel()
            scheduling.cancel()
            if not recovery.done():
                recovery.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await recovery
        finally:
            await self.stop()

    def _tell_systemd_ready(self, recovery: asyncio.Future[None]) -> None:
        """READY=1 once recovery is over, failed or not: Docker must not wait on a volume
        recovery could not repair (`orlop status` shows it)."""
        if recovery.cancelled():
            return
        outcome = f"recovery failed: {recovery.exception()}" if recovery.exception() else "ready"
        notify.notify(f"READY=1\nSTATUS={outcome}; drivers: {', '.join(self.service.drivers)}")

    async def _schedule_forever(self, recovery: asyncio.Future[None]) -> None:
        """Scheduled snapshots; the first round at start takes what was missed meanwhile."""
        with contextlib.suppress(Exception):
            await asyncio.shield(recovery)
        await self.service.scheduler.run_forever(SCHEDULE_INTERVAL)

    async def _sweep_trash_forever(self, recovery: asyncio.Future[None]) -> None:
        """Free the storage of volumes whose time in the trash is up; the first sweep at
        start frees what expired while the daemon was down."""
        with contextlib.suppress(Exception):
            await asyncio.shield(recovery)
        while True:
            try:
                await self.service.trash.sweep()
            except Exception:
                log.exception("sweeping the trash")
            await asyncio.sleep(TRASH_SWEEP_INTERVAL)

    async def _discover_forever(self, recovery: asyncio.Future[None]) -> None:
        """Adopt volumes other hosts made, for global drivers whose storage can list them."""
        intervals = self.service.discovery.intervals()
        if not intervals:
            return
        with contextlib.suppress(Exception):
            await asyncio.shield(recovery)  # the store is settled before anything is added
        loop = asyncio.get_running_loop()
        due = dict.fromkeys(intervals, 0.0)
        while True:
            for name, interval in intervals.items():
                if loop.time() >= due[name]:
                    due[name] = loop.time() + interval
                    try:
                        with backend_waiting(name, "discovery"):
                            await self.service.discover(name)
                    except Exception as error:
                        log.warning("discovering volumes of driver %s: %s", name, error)
                        background_done("discovery", error)
                        backend_outcome(name, error, "discovery")
                    else:
                        background_done("discovery")
                        backend_outcome(name, None, "discovery")
            await asyncio.sleep(max(0.2, min(due.values()) - loop.time()))


async def _ping_watchdog() -> None:
    """WATCHDOG=1 from the event loop: a stuck loop (not a slow backend) misses the pings."""
    interval = notify.watchdog_interval()
    while interval is not None:
        notify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def _watch_backends() -> None:
    """Every second: a backend whose watched call hangs is down (orlop.ops.reachability)."""
    while True:
        find_hung_backends()
        await asyncio.sleep(1.0)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("crash recovery failed: %s", task.exception())
        background_done("recovery", task.exception())
    elif not task.cancelled():
        background_done("recovery")


def serve(config: Config, daemon: Daemon | None = None, log_format: LogFormat = "text") -> None:
    """Run until SIGTERM; `daemon` is one already built from `config` (see orlop.managed)."""
    setup_logging(config.log_level, log_format)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio works too
        runner = asyncio.run
    runner((daemon or Daemon(config)).run())
