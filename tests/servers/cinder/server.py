"""Run the real Cinder (API, scheduler, volume service) in ONE process, for the tests.

Started by `tests/servers/cinder/venv.py` with the python of Cinder's own virtualenv:

    <cinder venv>/bin/python -P server.py <state dir> <port> [<nova> <token> <keystone>]

Everything stays inside `<state dir>`: cinder.conf, the SQLite database, locks, the log.
Messaging is oslo.messaging's in-process `fake:/` transport (no RabbitMQ), authentication
is `noauth_include_project_id` (the token `admin:<project>` is trusted as is), and the
volume driver is the `FakeLoggingVolumeDriver` that ships in Cinder's wheel: every API,
scheduler, database and state-machine path is Cinder's own; only the storage is absent.
The process prints "READY" on stdout once the API answers and the volume service has
reported to the scheduler.
"""

# Cinder must monkey-patch (eventlet) before anything else is imported.
from cinder import monkey_patch

monkey_patch.patch()

import sys  # noqa: E402
import threading  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

CONF_TEMPLATE = """\
[DEFAULT]
transport_url = fake:/
auth_strategy = noauth_include_project_id
enabled_backends = fake
host = orlop-cinder-test
state_path = {state}
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = {port}
osapi_volume_workers = 1
api_paste_config = {etc}/api-paste.ini
resource_query_filters_file = {etc}/resource_filters.json
scheduler_driver_init_wait_time = 1
# the volume service tells the scheduler its capacity at once, not after a minute
periodic_interval = 2
report_interval = 2
use_stderr = false
log_file = {state}/cinder.log
debug = false

[database]
connection = sqlite:///{state}/cinder.sqlite

[oslo_concurrency]
lock_path = {state}/locks

[coordination]
backend_url = file://{state}/coordination

[fake]
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fake
"""

# Cinder tells Nova about an in-use volume it extended (the "volume-extended" external
# event) through the [nova] account: here the tests' Nova, with the noauth token. Before
# deleting an attachment a user (not a service) asks for, it checks with Nova, with the
# user's token exchanged at Keystone (token_auth_url), that no server still uses it.
NOVA_TEMPLATE = """
[nova]
auth_type = admin_token
endpoint = {nova}
token = {token}
token_auth_url = {keystone}
"""


def write_config(state: Path, port: int, nova: list[str]) -> Path:
    import cinder

    etc = Path(sys.prefix) / "etc" / "cinder"
    if not (etc / "resource_filters.json").exists():
        etc = Path(cinder.__file__).resolve().parents[4] / "etc" / "cinder"
    config = state / "cinder.conf"
    text = CONF_TEMPLATE.format(state=state, port=port, etc=etc)
    if nova:
        text += NOVA_TEMPLATE.format(nova=nova[0], token=nova[1], keystone=nova[2])
    config.write_text(text)
    (state / "locks").mkdir(exist_ok=True)
    return config


def main() -> None:
    state, port = Path(sys.argv[1]).resolve(), int(sys.argv[2])
    config_file = write_config(state, port, sys.argv[3:6])

    from cinder import coordination, objects, rpc, service, version
    from cinder.common import config, constants
    from cinder.db import migration
    from oslo_config import cfg
    from oslo_log import log as logging

    conf = cfg.CONF
    objects.register_all()
    conf(["--config-file", str(config_file)], project="cinder", version=version.version_string())
    config.set_middleware_defaults()
    logging.setup(conf, "cinder")
    migration.db_sync()
    coordination.COORDINATOR.start()
    rpc.init(conf)

    scheduler = service.Service.create(binary="cinder-scheduler")
    volume = service.Service.create(
        host=f"{conf.host}@fake",
        service_name="fake",
        binary=constants.VOLUME_BINARY,
        coordination=True,
    )
    api = service.WSGIService("osapi_volume")
    service.serve(scheduler)
    launcher = service._launcher
    launcher.launch_service(volume)
    launcher.launch_service(api)
    threading.Thread(target=announce_ready, args=(port,), daemon=True).start()
    service.wait()


def announce_ready(port: int) -> None:
    """Print READY once the API answers (the scheduler has had its capabilities by then)."""
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                pass
        except urllib.error.HTTPError:
            break  # it answers: 300 Multiple Choices is the version document
        except OSError:
            time.sleep(0.2)
            continue
        else:
            break
    print("READY", flush=True)


if __name__ == "__main__":
    main()
