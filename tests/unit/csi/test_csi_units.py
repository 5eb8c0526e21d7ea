"""The CSI frontend's decisions without root: descriptor, names, status codes, config."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest

from orlop.config import load_config
from orlop.core.model import ConfigError, Conflict, InvalidOption, NotFound
from orlop.frontends.csi.errors import CsiError, InFlight, status_code
from orlop.frontends.csi.messages import enum_value, message, serialized_descriptor, service
from orlop.frontends.csi.shape import (
    BLOCK_KINDS,
    VOLUME_MODE,
    DriverShape,
    mismatch,
    plugin_name,
)


def test_messages_come_from_the_descriptor() -> None:
    methods = {m.name for m in service("Controller").methods}
    assert {"CreateVolume", "ControllerPublishVolume", "ControllerExpandVolume"} <= methods
    request = message("CreateVolumeRequest")(name="v", parameters={"fs": "xfs"})
    again = message("CreateVolumeRequest").FromString(request.SerializeToString())
    assert again.name == "v" and dict(again.parameters) == {"fs": "xfs"}


def test_a_module_without_a_descriptor_is_refused(tmp_path: Path) -> None:
    module = tmp_path / "csi_pb2.py"
    module.write_text("DESCRIPTOR = None\n")
    with pytest.raises(ConfigError, match="no serialized CSI descriptor"):
        serialized_descriptor(str(module))


def test_plugin_names_are_domain_names() -> None:
    assert plugin_name("orlop-block") == "orlop-block.csi.orlop.dev"
    assert plugin_name("My_Driver.1") == "my-driver-1.csi.orlop.dev"


def test_status_codes() -> None:
    assert status_code(InvalidOption("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(NotFound("x")) == grpc.StatusCode.NOT_FOUND
    assert status_code(Conflict("x")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(CsiError(grpc.StatusCode.ABORTED, "x")) == grpc.StatusCode.ABORTED


def test_a_second_call_on_a_busy_volume_is_aborted() -> None:
    in_flight = InFlight()
    with in_flight.guard("v"):
        with pytest.raises(CsiError) as caught, in_flight.guard("v"):
            pass
        assert caught.value.code == grpc.StatusCode.ABORTED
        with in_flight.guard("other"):  # other volumes proceed
            pass
    with in_flight.guard("v"):  # free again once the first ends
        pass


def test_csi_section_and_environment(tmp_path: Path) -> None:
    config_file = tmp_path / "orlop.yaml"
    config_file.write_text(
        "drivers: {a: {backend: directory}, b: {backend: directory}}\ncsi: {socket_dir: /run/x}\n"
    )
    config = load_config(str(config_file), environ={})
    assert config.csi is not None and config.csi_socket_path("b") == "/run/x/b.sock"
    assert load_config(str(config_file), environ={"ORLOP_CSI_NODE_ID": "n1"}).csi.node_id == "n1"
    with pytest.raises(ConfigError, match="names one socket, but 2 drivers"):
        load_config(str(config_file), environ={"CSI_ENDPOINT": "unix:///run/p/csi.sock"})
    config_file.write_text("drivers: {a: {backend: directory}}\n")
    assert load_config(str(config_file), environ={}).csi is None
    one = load_config(str(config_file), environ={"CSI_ENDPOINT": "unix:///run/p/csi.sock"})
    assert one.csi_socket_path("a") == "/run/p/csi.sock"
    with pytest.raises(ConfigError, match="absolute"):
        load_config(str(config_file), environ={"CSI_ENDPOINT": "unix://relative.sock"})


def test_the_stage_wait_setting(tmp_path: Path) -> None:
    config_file = tmp_path / "orlop.yaml"
    config_file.write_text("drivers: {a: {backend: directory}}\ncsi: {socket_dir: /run/x}\n")
    config = load_config(str(config_file), environ={})
    assert config.csi is not None and config.csi.stage_wait == 10.0  # the default
    waiting = load_config(str(config_file), environ={"ORLOP_CSI_STAGE_WAIT": "2.5"})
    assert waiting.csi is not None and waiting.csi.stage_wait == 2.5
    with pytest.raises(ConfigError, match=r"csi\.stage_wait"):
        load_config(str(config_file), environ={"ORLOP_CSI_STAGE_WAIT": "-1"})
    config_file.write_text("drivers: {a: {backend: directory}}\n")
    # Alone it does not turn CSI on; with CSI_ENDPOINT (a managed plugin) it applies.
    assert load_config(str(config_file), environ={"ORLOP_CSI_STAGE_WAIT": "3"}).csi is None
    plugin = load_config(
        str(config_file),
        environ={"CSI_ENDPOINT": "unix:///run/p/csi.sock", "ORLOP_CSI_STAGE_WAIT": "3"},
    )
    assert plugin.csi is not None and plugin.csi.stage_wait == 3.0


def test_the_csi_plugin_manifest() -> None:
    from orlop.managed.csi import csi_manifest
    from orlop.managed.kinds import plugin_kind
    from orlop.managed.manifest import manifest

    config = csi_manifest(manifest(plugin_kind("ebs"), "1.0"))
    assert config["interface"] == {
        "types": ["docker.csicontroller/1.0", "docker.csinode/1.0"],
        "socket": "csi.sock",
    }
    assert config["propagatedMount"] == "/data/published"
    assert "CAP_SYS_ADMIN" in config["linux"]["capabilities"]
    env = {e["name"]: e for e in config["env"]}
    assert env["CSI_ENDPOINT"]["value"] == "unix:///run/docker/plugins/csi.sock"
    assert env["CSI_ENDPOINT"]["settable"] == [] and env["ORLOP_CSI_NODE_ID"]["settable"]
    assert env["ORLOP_CSI_STAGE_WAIT"] | {"description": ""} == {
        "name": "ORLOP_CSI_STAGE_WAIT", "description": "", "settable": ["value"], "value": "10",
    }  # fmt: skip
    assert env["ORLOP_PLUGIN_KIND"]["value"] == "ebs"  # the volume plugin's settings stay


def _capability(access: str) -> Any:
    mode = message("VolumeCapability.AccessMode")(
        mode=enum_value("VolumeCapability.AccessMode", "Mode", "SINGLE_NODE_WRITER")
    )
    fields = {access: message(f"VolumeCapability.{access.capitalize()}Volume")()}
    return message("VolumeCapability")(access_mode=mode, **fields)


def test_raw_block_is_offered_by_exactly_the_kinds_the_refusal_names() -> None:
    from orlop.backends import BACKENDS, backend_class

    with_device = {kind for kind in BACKENDS if VOLUME_MODE in backend_class(kind).options.options}
    assert with_device == set(BLOCK_KINDS.split(", "))


def test_a_volume_keeps_its_access_type() -> None:
    block, mount = _capability("block"), _capability("mount")
    raw = {VOLUME_MODE: "block", "size": "1"}
    assert mismatch("v", raw, block) == "" and mismatch("v", {}, mount) == ""
    assert "no filesystem to mount" in mismatch("v", raw, mount)
    assert "holds a filesystem" in mismatch("v", {"fs": "ext4"}, block)
    shape = DriverShape("d", "loopfile", True, False, False, False, True, True, True)
    with pytest.raises(CsiError, match="not raw block"):  # raw_block is off by default
        shape.check_capabilities([block], "CreateVolume")
    able = dataclasses.replace(shape, raw_block=True, capacity=True)
    assert able.check_capabilities([block], "CreateVolume") is True
    assert able.check_capabilities([mount], "CreateVolume") is False
    with pytest.raises(CsiError, match="not both"):
        able.check_capabilities([block, mount], "CreateVolume")
    assert "GET_CAPACITY" in able.controller_rpcs()
    assert "GET_CAPACITY" not in shape.controller_rpcs()
