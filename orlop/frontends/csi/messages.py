"""CSI v1 messages, from the compiled descriptor that PyPI's ember-csi wheel carries.

The descriptor is read from `ember_csi/v1_1_0/csi_pb2.py` as data: the file is parsed (never
executed, and nothing else of ember-csi is imported) for its serialized FileDescriptorProto,
which goes into a private descriptor pool; protobuf makes the message classes from it. Why
this way, and not a copy of csi.proto in this repository: docs/csi.md.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

from orlop.core.model import ConfigError

DESCRIPTOR_PACKAGE = "ember_csi"
DESCRIPTOR_MODULE = ("v1_1_0", "csi_pb2.py")
CSI_PACKAGE = "csi.v1"


def _descriptor_source() -> str:
    spec = importlib.util.find_spec(DESCRIPTOR_PACKAGE)  # finds; does not import
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the CSI frontend needs the CSI v1 descriptor from the ember-csi package: "
            "run scripts/setup (it installs ember-csi==0.9.1 without its dependencies)"
        )
    return os.path.join(next(iter(spec.submodule_search_locations)), *DESCRIPTOR_MODULE)


def serialized_descriptor(path: str) -> bytes:
    """The `serialized_pb=` bytes of a protoc-generated module, read without running it."""
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "serialized_pb":
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                return value
    raise ConfigError(f"{path} holds no serialized CSI descriptor")


@functools.cache
def csi_file() -> FileDescriptor:
    pool = descriptor_pool.DescriptorPool()
    for dependency in (descriptor_pb2, timestamp_pb2, wrappers_pb2):
        pool.AddSerializedFile(dependency.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(serialized_descriptor(_descriptor_source()))
    return pool.FindFileByName("csi.proto")


@functools.cache
def message(name: str) -> Any:
    """The class of CSI message `name` ("CreateVolumeRequest", "VolumeCapability", …)."""
    found = csi_file().pool.FindMessageTypeByName(f"{CSI_PACKAGE}.{name}")
    return message_factory.GetMessageClass(found)


def service(name: str) -> ServiceDescriptor:
    """CSI service `name`: Identity, Controller or Node."""
    return csi_file().services_by_name[name]


def enum_value(message_name: str, enum: str, value: str) -> int:
    """The number of enum `value` nested in a message (ControllerServiceCapability.RPC.Type…)."""
    descriptor = csi_file().pool.FindEnumTypeByName(f"{CSI_PACKAGE}.{message_name}.{enum}")
    return int(descriptor.values_by_name[value].number)
