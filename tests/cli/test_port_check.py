"""``fedsilo server`` checks its port before gRPC binds it: taken means someone listens there,
not that the last run's connections still linger in TIME_WAIT."""

from __future__ import annotations

import socket

import pytest

from fedsilo.cli.server import check_port_free


def _time_wait_on_a_free_port() -> int:
    """A port nobody listens on, holding a connection the server side closed first (the
    kernel keeps that end in TIME_WAIT for a minute)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server's end closes first: TIME_WAIT on the server's port
        client.recv(1)
        client.close()
    return port


def test_connections_of_a_finished_run_do_not_hold_the_port() -> None:
    port = _time_wait_on_a_free_port()
    with socket.socket() as plain:  # a bind without SO_REUSEADDR is refused here ...
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    check_port_free(f"127.0.0.1:{port}")  # ... and the server's check lets it start


def test_a_port_someone_listens_on_is_refused() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port_free(f"127.0.0.1:{port}")
