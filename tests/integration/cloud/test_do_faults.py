"""DigitalOcean under API faults: the fault proxy (tests/support/faults.py) in front of the fake
API, as the `api_url` pydo (unpatched) talks to. Reads are retried through throttling, server
errors, dropped connections and slow answers; a create or attach whose answer is lost (the
call happened) never makes a second volume or a second attachment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from orlop.backends.base import BackendContext, VolumeRef
from orlop.backends.cloud.digitalocean.backend import DigitalOceanBackend
from orlop.backends.cloud.layer import CloudDisks
from orlop.core.model import BackendError
from tests.servers.digitalocean.server import DoServer
from tests.servers.digitalocean.testbed import DoHost
from tests.support.faults import Fault, FaultProxy, http_call

pytest_plugins = ["tests.servers.digitalocean.fixtures"]

MakeHost = Callable[..., DoHost]
TRANSIENT = (Fault.THROTTLE, Fault.ERROR_500, Fault.ERROR_503, Fault.DROP, Fault.SLOW)
READS = http_call("GET", "/v2/volumes")
ACTIONS = http_call("POST", "/actions")


@pytest.fixture
def faults(do_server: DoServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(do_server.url, "digitalocean")
    try:
        yield proxy
    finally:
        proxy.stop()


def layer(host: DoHost, faults: FaultProxy) -> CloudDisks:
    # Enough attempts for the five faults a test arms to meet one read in a row.
    settings = {**host.settings, "api_url": faults.url, "api_max_attempts": 8}
    backend = DigitalOceanBackend(BackendContext("do", str(host.state_dir), settings=settings))
    return backend.provider


def make(provider: CloudDisks, name: str, **options: str) -> VolumeRef:
    canonical = provider.options.validate(options)
    provider.validate(name, canonical)
    ref = VolumeRef(name, canonical)
    ref.record = provider.create(ref)
    return ref


def holders(server: DoServer, volume_id: str) -> list[str]:
    with server.lock:
        return [str(d) for d in server.volumes[volume_id].droplet_ids]


def test_reads_are_retried_through_every_transient_fault(
    do_host: MakeHost, do_server: DoServer, faults: FaultProxy
) -> None:
    host = do_host()
    provider = layer(host, faults)
    volume = make(provider, "steady", size="1G")
    for fault in TRANSIENT:
        faults.inject(fault, READS, delay=0.5)
    provider.attach_device(volume)
    assert holders(do_server, volume.record["disk_id"]) == [str(host.droplet_id)]
    provider.detach_device(volume)
    assert holders(do_server, volume.record["disk_id"]) == []
    for fault in TRANSIENT:
        assert faults.met(fault) == 1, (fault, faults.injected)
    provider.remove(volume)
    assert do_server.volumes == {}


def test_a_lost_answer_to_create_makes_no_second_volume(
    do_host: MakeHost, do_server: DoServer, faults: FaultProxy
) -> None:
    provider = layer(do_host(), faults)
    faults.inject(Fault.LOSE_ANSWER, http_call("POST", "/v2/volumes"))
    ref = VolumeRef("lost-create", provider.options.validate({"size": "1G"}))
    with pytest.raises(BackendError, match="DigitalOcean"):
        provider.create(ref)
    [made] = do_server.volumes  # the call happened
    ref.record = provider.create(ref)  # the retry finds it by its labels
    assert ref.record["disk_id"] == made and list(do_server.volumes) == [made]
    provider.remove(ref)
    assert do_server.volumes == {}


def test_a_lost_answer_to_attach_leaves_one_attachment_at_most(
    do_host: MakeHost, do_server: DoServer, faults: FaultProxy
) -> None:
    first, second = do_host(), do_host()
    provider = layer(first, faults)
    volume = make(provider, "lost-attach", size="1G")
    volume_id = volume.record["disk_id"]
    faults.inject(Fault.LOSE_ANSWER, ACTIONS)
    with pytest.raises(BackendError, match="attaching lost-attach"):
        provider.attach_device(volume)
    # The attach happened; Orlop, not knowing, detached it again rather than leave it.
    assert faults.met(Fault.LOSE_ANSWER) == 1 and holders(do_server, volume_id) == []
    provider.attach_device(volume)
    assert holders(do_server, volume_id) == [str(first.droplet_id)]

    # The preempting host's force detach loses its answer: the state decides, one holder.
    other = layer(second, faults)
    taken = make(other, "lost-attach", preempt="true")
    faults.inject(Fault.LOSE_ANSWER, ACTIONS)
    other.attach_device(taken)
    assert holders(do_server, volume_id) == [str(second.droplet_id)]
    assert faults.met(Fault.LOSE_ANSWER) == 2
    other.detach_device(taken)
    other.remove(taken)
    assert do_server.volumes == {}
