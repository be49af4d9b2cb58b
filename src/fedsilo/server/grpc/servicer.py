"""The ``FlowerService.Join`` servicer: one bidirectional stream per client.

Thin on purpose: it registers the client, relays instructions and replies
through the client's bridge, and unregisters the client when the stream ends.
Messages stay bytes here; they are decoded by the proxy, where a bad one
becomes that client's failure instead of breaking the stream.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import grpc

from fedsilo.server.client_manager import ClientManager
from fedsilo.server.grpc.bridge import InstructionBridge
from fedsilo.server.grpc.client_proxy import GrpcClientProxy

log = logging.getLogger("fedsilo.server")

__all__ = ["FederationServicer", "SERVICE_NAME"]

SERVICE_NAME = "flwr.proto.FlowerService"
_DISCONNECT_RES_TAG = b"\x0a"  # ClientMessage field 1 (disconnect_res), length-delimited


class FederationServicer:
    """Serves ``Join`` streams for a client manager."""

    def __init__(self, client_manager: ClientManager) -> None:
        self.client_manager = client_manager
        self._serial = itertools.count(1)

    def Join(  # noqa: N802 - the protocol's method name
        self, request_iterator: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        cid = f"{context.peer()}#{next(self._serial)}"
        bridge = InstructionBridge(cid)
        proxy = GrpcClientProxy(cid, bridge)
        if not self.client_manager.register(proxy):
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"client id {cid} is taken")
        context.add_callback(lambda: self._release(proxy, "the client's stream ended"))
        try:
            while True:
                message = bridge.next_message()
                if message is None:
                    return
                yield message
                try:
                    reply = next(request_iterator)
                except StopIteration:
                    bridge.close("the client closed its stream")
                    return
                except grpc.RpcError as exc:
                    bridge.close(f"the client's stream failed: {exc}")
                    return
                bridge.deliver(reply)
                if reply.startswith(_DISCONNECT_RES_TAG):
                    bridge.close("the client disconnected at the server's request")
                    return
        finally:
            self._release(proxy, "the client's stream ended")

    def _release(self, proxy: GrpcClientProxy, reason: str) -> None:
        proxy.bridge.close(reason)
        self.client_manager.unregister(proxy)


def add_servicer(server: grpc.Server, servicer: FederationServicer) -> None:
    """Register the servicer with raw-bytes (de)serializers."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {"Join": grpc.stream_stream_rpc_method_handler(servicer.Join)},
    )
    server.add_generic_rpc_handlers((handler,))
