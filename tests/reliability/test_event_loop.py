"""gRPC servers share one event loop: stopping one leaves the others serving."""

from __future__ import annotations

import threading

import numpy as np

from fedsilo.common import (
    ClientDisconnected,
    FitIns,
    ReconnectIns,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from fedsilo.server.grpc.server import server_loop, start_grpc_server
from tests.reliability.peers import (
    Honest,
    RawPeer,
    RecordingClientManager,
    initial,
    start_client_thread,
)


def test_a_server_keeps_serving_after_another_in_the_process_stopped() -> None:
    managers = [RecordingClientManager(), RecordingClientManager()]
    servers = [start_grpc_server(client_manager=m, server_address="127.0.0.1:0")
               for m in managers]
    first, _ = servers[0]
    second, port = servers[1]
    assert first.stop(None).wait(10)  # the first server is gone ...
    errors: list[BaseException] = []
    thread = start_client_thread(f"127.0.0.1:{port}", Honest(2.0, 3), errors, max_wait_time=10)
    try:
        assert managers[1].wait_for(1, timeout=20)
        (proxy,) = managers[1].all().values()
        res = proxy.fit(FitIns(ndarrays_to_parameters(initial()), {}), timeout=20)
        # ... and the second one still carries a whole exchange.
        got = parameters_to_ndarrays(res.parameters)
        for i, (layer, start) in enumerate(zip(got, initial(), strict=True)):
            np.testing.assert_allclose(layer, start + 2.0 * (i + 1))  # Honest's update
        assert res.num_examples == 3
        proxy.reconnect(ReconnectIns(seconds=None), timeout=10)
        thread.join(10)
        assert not thread.is_alive()
    finally:
        assert second.stop(None).wait(10)
    assert not errors
    assert server_loop().is_running()  # shared by later servers


def test_stop_is_idempotent_and_ends_every_stream() -> None:
    manager = RecordingClientManager()
    server, port = start_grpc_server(client_manager=manager, server_address="127.0.0.1:0")
    errors: list[BaseException] = []
    threads = [start_client_thread(f"127.0.0.1:{port}", Honest(1.0, 1), errors,
                                   max_retries=0) for _ in range(3)]
    assert manager.wait_for(3, timeout=20)
    stopped = server.stop(None)
    assert server.stop(None) is stopped and stopped.wait(10)
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert manager.num_available() == 0  # every stream unregistered its client
    assert server.wait_for_termination(0)


def test_a_client_whose_stream_ended_is_unregistered_before_its_request_fails() -> None:
    """A round that sees the failure must not be able to sample the client again."""
    manager = RecordingClientManager()
    server, port = start_grpc_server(client_manager=manager, server_address="127.0.0.1:0")
    try:
        for _ in range(5):  # an ordering, not a timing: it must hold every time
            peer = RawPeer(f"127.0.0.1:{port}")
            assert manager.wait_for(1, timeout=20)
            (proxy,) = manager.all().values()
            seen: list[object] = []

            def ask(proxy: object = proxy, seen: list[object] = seen) -> None:
                try:
                    proxy.fit(FitIns(ndarrays_to_parameters(initial()), {}),  # type: ignore
                              timeout=20)
                except ClientDisconnected:
                    seen.append(set(manager.all()))  # who is registered when it fails

            asking = threading.Thread(target=ask)
            asking.start()
            peer.receive()  # the instruction arrived; the client goes away without answering
            peer.close()
            asking.join(20)
            assert seen == [set()], seen
    finally:
        server.stop(None).wait(10)
