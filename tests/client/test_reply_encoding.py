"""A client's reply is written into its messages straight from the arrays fit returned."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.client.client import Client
from fedsilo.common import chunking, serde
from fedsilo.common.parameter import ArrayParameters, ndarrays_to_parameters, tensor_pieces
from fedsilo.common.typing import FitIns, FitRes, Parameters
from fedsilo.simulation import InProcessClientProxy
from tests.conftest import free_port
from tests.reliability.peers import ServerThread
from tests.reliability.test_paced import Offset, model

pytestmark = pytest.mark.timeout(120)

class Keeping(Client):
    """Passes everything to a NumPyClient and keeps each fit reply to look at afterwards."""

    def __init__(self, inner: fl.client.NumPyClient) -> None:
        self.inner = inner.to_client()
        self.replies: list[FitRes] = []

    def get_parameters(self, ins: Any) -> Any:
        return self.inner.get_parameters(ins)

    def fit(self, ins: FitIns) -> FitRes:
        reply = self.inner.fit(ins)
        self.replies.append(reply)
        return reply

    def evaluate(self, ins: Any) -> Any:
        return self.inner.evaluate(ins)


@pytest.mark.parametrize("in_frames", [False, True], ids=["one message", "paced frames"])
def test_replies_go_out_from_the_arrays_and_average_exactly(
    in_frames: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if in_frames:  # the path of models of hundreds of megabytes, scaled down
        monkeypatch.setattr(chunking, "PACED_ABOVE", 64 * 1024)
        monkeypatch.setattr(chunking, "PACED_FRAME", 32 * 1024)
    seen: dict[int, list[np.ndarray]] = {}

    def evaluate(server_round: int, params: list[np.ndarray], config: dict) -> tuple:
        seen[server_round] = [p.copy() for p in params]
        return 0.0, {}

    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=2, min_available_clients=2, fraction_evaluate=0.0,
        evaluate_fn=evaluate, initial_parameters=ndarrays_to_parameters(model()))
    address = f"127.0.0.1:{free_port()}"
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=2, round_timeout=60))
    clients = [Keeping(Offset(1.0, 1)), Keeping(Offset(3.0, 3))]
    errors: list[BaseException] = []

    def run(client: Client) -> None:
        try:
            fl.client.start_client(server_address=address, client=client, max_wait_time=30)
        except BaseException as exc:  # checked below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    server.join(100)
    for thread in threads:
        thread.join(10)
    assert not errors
    # each round adds (1 * 1 + 3 * 3) / 4 = 2.5 to every parameter
    for got, start in zip(seen[2], model(), strict=True):
        np.testing.assert_allclose(got, start + 5.0, rtol=1e-12)
    for client in clients:
        assert len(client.replies) == 2
        for reply in client.replies:
            assert isinstance(reply.parameters, ArrayParameters)
            # sent without its tensors ever being built: each is still a header and a view
            # of an array fit returned
            for pieces in tensor_pieces(reply.parameters):
                assert len(pieces) == 2 and isinstance(pieces[1], memoryview)


def test_a_reply_in_process_is_copied_when_made() -> None:
    """In-process simulation hands the reply over as it is: the client may still change
    its arrays, so their bytes are taken when fit returns."""
    kept: list[np.ndarray] = []

    class Changing(fl.client.NumPyClient):
        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
            kept[:] = [p + 1.0 for p in parameters]
            return kept, 1, {}

    proxy = InProcessClientProxy("c0", Changing().to_client())
    reply = proxy.fit(FitIns(ndarrays_to_parameters(model()), {}), timeout=30)
    assert type(reply.parameters) is Parameters
    for array in kept:
        array += 100.0  # the client's own arrays change after the reply was made
    for got, start in zip(fl.common.parameters_to_ndarrays(reply.parameters), model(),
                          strict=True):
        np.testing.assert_allclose(got, start + 1.0, rtol=1e-12)


@pytest.mark.parametrize("paced", [False, True])
def test_a_reply_from_arrays_encodes_to_the_same_bytes(paced: bool) -> None:
    arrays = [*model(), np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.float32(4.0)]
    status = fl.common.Status(fl.common.Code.OK, "Success")
    lazy = FitRes(status, ArrayParameters(arrays), 5, {"loss": 0.5})
    eager = FitRes(status, ndarrays_to_parameters(arrays), 5, {"loss": 0.5})
    assert serde.client_message_to_bytes(lazy) == serde.client_message_to_bytes(eager)
    options: dict[str, Any] = {"max_length": 2**31 - 1, "peer_limit": 2**31 - 1, "what": "x"}
    if not paced:  # one plain message
        assert chunking.encode_frames(lazy, **options) == chunking.encode_frames(eager, **options)
        return
    options.update(paced_above=1024, paced_frame=64 * 1024)
    got = [chunking.parse_frame(f) for f in chunking.encode_frames(lazy, **options)]
    want = [chunking.parse_frame(f) for f in chunking.encode_frames(eager, **options)]
    assert len(got) == len(want) > 10
    for a, b in zip(got, want, strict=True):  # every field but the transfer's id
        assert (a.index, a.count, a.head, a.sizes, bytes(a.data)) == \
            (b.index, b.count, b.head, b.sizes, bytes(b.data))
