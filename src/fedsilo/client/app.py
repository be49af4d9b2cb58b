"""``start_client`` and ``start_numpy_client``: connect to a server and serve it."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from fedsilo.client.client import Client
from fedsilo.client.grpc_connection import (
    DEFAULT_KEEPALIVE_TIME,
    DEFAULT_KEEPALIVE_TIMEOUT,
    StreamConnection,
    grpc_channel,
)
from fedsilo.client.message_handler import _error_reply, handle_instruction
from fedsilo.client.numpy_client import NumPyClient, _NumPyClientAdapter
from fedsilo.common import GRPC_MAX_MESSAGE_LENGTH
from fedsilo.common.chunking import TooLarge
from fedsilo.common.exceptions import ProtocolError
from fedsilo.common.parameter import replies_encoded_at_once
from fedsilo.common.typing import (
    EvaluateIns,
    FitIns,
    GetParametersIns,
    GetPropertiesIns,
    ReconnectIns,
)

log = logging.getLogger("fedsilo.client")

_INSTRUCTION_NAMES: dict[type, str] = {
    FitIns: "fit", EvaluateIns: "evaluate", GetParametersIns: "get_parameters",
    GetPropertiesIns: "get_properties", ReconnectIns: "reconnect",
}

__all__ = ["RetryPolicy", "start_client", "start_numpy_client"]

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_REFUSED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


class RetryPolicy:
    """Exponential backoff with jitter, bounded by a number of tries and a total wait.

    ``max_retries=None`` and ``max_wait_time=None`` mean no bound, as in Flower.
    """

    def __init__(
        self,
        *,
        max_retries: int | None = None,
        max_wait_time: float | None = None,
        initial_delay: float = 0.25,
        max_delay: float = 10.0,
    ) -> None:
        self.max_retries = max_retries
        self.max_wait_time = max_wait_time
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.reset()

    def reset(self) -> None:
        self.tries_ = 0
        self.waited_ = 0.0

    def next_delay(self) -> float | None:
        """Seconds to wait before the next try, or None when the budget is spent."""
        if self.max_retries is not None and self.tries_ >= self.max_retries:
            return None
        delay = min(self.max_delay, self.initial_delay * 2**self.tries_)
        delay *= random.uniform(0.5, 1.0)
        if self.max_wait_time is not None:
            if self.waited_ >= self.max_wait_time:
                return None
            delay = min(delay, self.max_wait_time - self.waited_)
        self.tries_ += 1
        self.waited_ += delay
        return delay


def start_client(
    *,
    server_address: str,
    client_fn: Callable[[str], Client | NumPyClient] | None = None,
    client: Client | NumPyClient | None = None,
    grpc_max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    root_certificates: bytes | str | None = None,
    insecure: bool | None = None,
    transport: str | None = None,
    max_retries: int | None = None,
    max_wait_time: float | None = None,
    client_certificate: tuple[bytes | str, bytes | str] | None = None,
    keepalive_time: float = DEFAULT_KEEPALIVE_TIME,
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
) -> None:
    """Connect to the federation server and answer its instructions until it lets go.

    Retries with exponential backoff while the server is not reachable yet or
    the stream drops; honours the server's ReconnectIns. ``client_certificate``
    is (certificate chain, private key), PEM bytes or file paths, for a server
    that admits enrolled clients only. Keepalive pings every ``keepalive_time``
    seconds keep the stream open while the client trains for a long time.
    """
    if transport not in (None, "grpc-bidi"):
        raise ValueError(f"transport {transport!r} is not supported; use 'grpc-bidi' or None")
    resolved = _resolve_client(client, client_fn)
    certificates = _read_certificates(root_certificates)
    if insecure is None:
        insecure = certificates is None
    if insecure and certificates is not None:
        raise ValueError("root_certificates were given with insecure=True; pass one or the other")
    identity = None
    if client_certificate is not None:
        chain, key = (_read_pem(p, "client certificate") for p in client_certificate)
        identity = (chain, key)
    session = _Session(
        server_address=server_address, insecure=insecure, root_certificates=certificates,
        max_message_length=grpc_max_message_length, client_certificate=identity,
        keepalive_time=keepalive_time, keepalive_timeout=keepalive_timeout)
    retry = RetryPolicy(max_retries=max_retries, max_wait_time=max_wait_time)
    while True:
        try:
            reconnect_after = _serve_one_session(resolved, session, on_connected=retry.reset)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code in _REFUSED:
                details = exc.details() if hasattr(exc, "details") else str(exc)
                raise PermissionError(
                    f"the server at {server_address} refused this client: {details}") from exc
            if code not in _RETRYABLE:
                raise
            delay = retry.next_delay()
            if delay is None:
                raise ConnectionError(
                    f"could not reach the server at {server_address} after {retry.tries_} "
                    f"retries ({retry.waited_:.1f} s): {code}"
                ) from exc
            log.warning("server %s unreachable (%s); retrying in %.2f s", server_address,
                        code, delay)
            time.sleep(delay)
            continue
        if reconnect_after is None:
            log.info("disconnected from %s", server_address)
            return
        log.info("server asked to reconnect in %d s", reconnect_after)
        time.sleep(reconnect_after)


def start_numpy_client(
    *,
    server_address: str,
    client: NumPyClient,
    grpc_max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    root_certificates: bytes | str | None = None,
    insecure: bool | None = None,
    transport: str | None = None,
    max_retries: int | None = None,
    max_wait_time: float | None = None,
    client_certificate: tuple[bytes | str, bytes | str] | None = None,
    keepalive_time: float = DEFAULT_KEEPALIVE_TIME,
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
) -> None:
    """Start a ``NumPyClient``; same arguments as ``start_client``."""
    start_client(
        server_address=server_address,
        client=client.to_client(),
        grpc_max_message_length=grpc_max_message_length,
        root_certificates=root_certificates,
        insecure=insecure,
        transport=transport,
        max_retries=max_retries,
        max_wait_time=max_wait_time,
        client_certificate=client_certificate,
        keepalive_time=keepalive_time,
        keepalive_timeout=keepalive_timeout,
    )


@dataclass(frozen=True)
class _Session:
    """How to reach the server: the same for every reconnection."""

    server_address: str
    insecure: bool
    root_certificates: bytes | None
    max_message_length: int
    client_certificate: tuple[bytes, bytes] | None
    keepalive_time: float
    keepalive_timeout: float


def _serve_one_session(
    client: Client, session: _Session, on_connected: Callable[[], None]
) -> int | None:
    """Serve one stream; return seconds until reconnecting, or None to stop."""
    with grpc_channel(session.server_address, insecure=session.insecure,
                      root_certificates=session.root_certificates,
                      max_message_length=session.max_message_length,
                      client_certificate=session.client_certificate,
                      keepalive_time=session.keepalive_time,
                      keepalive_timeout=session.keepalive_timeout) as channel:
        connection = StreamConnection(channel, session.max_message_length)
        try:
            # A NumPyClient served as it is gets its replies written into the frames straight
            # from the arrays fit returned: nothing of the client's runs before they are sent.
            # A Client that wraps one could still change those arrays, so it gets copies.
            direct = type(client) is _NumPyClientAdapter
            while True:
                ins = connection.receive()
                if ins is None:
                    raise _StreamEnded()
                on_connected()
                kind = _INSTRUCTION_NAMES.get(type(ins), type(ins).__name__)
                log.info("received %s instruction", kind)
                with replies_encoded_at_once(direct):
                    reply = handle_instruction(client, ins)
                    try:
                        connection.send(reply)
                    except TooLarge as exc:
                        if isinstance(ins, ReconnectIns):
                            raise
                        log.error("reply not sent: %s", exc)
                        connection.send(_error_reply(ins, f"reply not sent: {exc}"))
                log.info("sent %s reply", kind)
                if isinstance(ins, ReconnectIns):
                    connection.finish()
                    return ins.seconds
                # Let go of this instruction before waiting for the next: a model that came in
                # frames frees its buffer for the next model.
                del ins, reply
        except _StreamEnded:
            # The server closed the stream without a ReconnectIns: treat it as a drop.
            raise _DroppedStream() from None
        except ProtocolError:
            log.error("the server sent a message fedsilo cannot read; closing the connection")
            raise
        finally:
            connection.close()


class _StreamEnded(Exception):
    pass


class _DroppedStream(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the server closed the stream without asking the client to disconnect"


def _resolve_client(
    client: Client | NumPyClient | None,
    client_fn: Callable[[str], Client | NumPyClient] | None,
) -> Client:
    if (client is None) == (client_fn is None):
        raise ValueError("pass exactly one of client= or client_fn=")
    chosen = client if client is not None else client_fn("0")  # type: ignore[misc]
    if isinstance(chosen, NumPyClient | Client):
        return chosen.to_client()
    raise TypeError(
        f"expected a fedsilo Client or NumPyClient, got {type(chosen).__name__}; subclass "
        "fedsilo.client.NumPyClient and implement get_parameters, fit and evaluate"
    )


def _read_certificates(root_certificates: bytes | str | None) -> bytes | None:
    if root_certificates is None:
        return None
    return _read_pem(root_certificates, "root certificates")


def _read_pem(value: bytes | str | Path, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    return path.read_bytes()
