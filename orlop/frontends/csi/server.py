"""One gRPC server per CSI endpoint (a unix socket), serving Identity, Controller and Node.

Handlers are built from the CSI descriptor's service definitions, so no generated stubs are
needed. A handler raising OrlopError ends the call with the matching status code and its
message; nothing of a request (which may hold secrets) is logged."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from orlop.core.context import operation
from orlop.core.model import OrlopError
from orlop.frontends.csi.errors import status_code
from orlop.frontends.csi.messages import message, service

log = logging.getLogger(__name__)

Call = Callable[[Any], Awaitable[Any]]


def _handler(service_name: str, method: str, call: Call) -> grpc.RpcMethodHandler:
    descriptor = service(service_name).methods_by_name[method]
    request_class = message(descriptor.input_type.name)
    response_class = message(descriptor.output_type.name)

    async def handle(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        # One operation ID per CSI call; the service fills in its driver and volume.
        with operation(method):
            try:
                return await call(request)
            except OrlopError as error:
                code = status_code(error)
                # Orlop's own message (never a request field that may hold a secret).
                log.warning("CSI %s: %s: %s", method, code.name, error)
                await context.abort(code, str(error))
            except Exception as error:  # a bug: say so, without the request
                log.exception("CSI %s failed", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"{method}: {error}")

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_class.FromString,
        response_serializer=response_class.SerializeToString,
    )


def generic_handler(service_name: str, calls: dict[str, Call]) -> grpc.GenericRpcHandler:
    """Every method of CSI service `service_name`; those not in `calls` answer UNIMPLEMENTED."""
    handlers = {
        method: _handler(service_name, method, calls[method])
        for method in service(service_name).methods_by_name
        if method in calls
    }
    return grpc.method_handlers_generic_handler(f"csi.v1.{service_name}", handlers)


class CsiServer:
    """A gRPC server on one unix socket, made and removed with mode `mode`."""

    def __init__(self, handlers: list[grpc.GenericRpcHandler]) -> None:
        self.handlers = handlers
        self.server: aio.Server | None = None
        self.path = ""

    async def start(self, path: str, mode: int = 0o600) -> None:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.exists(path):  # a socket left by a killed daemon
            os.unlink(path)
        server = aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(tuple(self.handlers))
        if not server.add_insecure_port(f"unix://{path}"):
            raise OrlopError(f"cannot listen on CSI socket {path}")
        old_umask = os.umask(0o077)
        try:
            await server.start()
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        self.server, self.path = server, path

    async def close(self, grace: float = 1.0) -> None:
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)
