"""A client's reply is written into its messages straight from the arrays fit returned."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.client.client import Client
from fedsilo.common import chunking, parameter, serde
from fedsilo.common.parameter import (
    ArrayParameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    tensor_pieces,
)
from fedsilo.common.typing import FitIns, FitRes, Parameters
from fedsilo.simulation import InProcessClientProxy
from tests.conftest import free_port
from tests.reliability.peers import ServerThread
from tests.reliability.test_paced import Offset, model

pytestmark = pytest.mark.timeout(120)

def federate(clients: list[Client | fl.client.NumPyClient], from_client: bool = False,
             rounds: int = 2) -> dict[int, list[np.ndarray]]:
    """A real federation over gRPC on loopback; the model the server holds after each round.
    ``from_client``: the server asks a client for the initial parameters."""
    seen: dict[int, list[np.ndarray]] = {}

    def evaluate(server_round: int, params: list[np.ndarray], config: dict) -> tuple:
        seen[server_round] = [p.copy() for p in params]
        return 0.0, {}

    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=len(clients), min_available_clients=len(clients), fraction_evaluate=0.0,
        evaluate_fn=evaluate,
        initial_parameters=None if from_client else ndarrays_to_parameters(model()))
    address = f"127.0.0.1:{free_port()}"
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=rounds, round_timeout=60))
    errors: list[BaseException] = []

    def run(client: Client | fl.client.NumPyClient) -> None:
        try:
            fl.client.start_client(server_address=address, client=client.to_client(),
                                   max_wait_time=30)
        except BaseException as exc:  # checked below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    server.join(100)
    for thread in threads:
        thread.join(10)
    assert not errors
    return seen


@pytest.mark.parametrize("in_frames", [False, True], ids=["one message", "paced frames"])
@pytest.mark.parametrize("from_client", [False, True], ids=["server's model", "client's model"])
def test_replies_go_out_from_the_arrays_and_average_exactly(
    in_frames: bool, from_client: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if in_frames:  # the path of models of hundreds of megabytes, scaled down
        monkeypatch.setattr(chunking, "PACED_ABOVE", 64 * 1024)
        monkeypatch.setattr(chunking, "PACED_FRAME", 32 * 1024)
    made: list[ArrayParameters] = []

    class Recorded(ArrayParameters):  # every reply's parameters, kept to look at afterwards
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(parameter, "ArrayParameters", Recorded)
    seen = federate([Offset(1.0, 1), Offset(3.0, 3)], from_client=from_client)
    # each round adds (1 * 1 + 3 * 3) / 4 = 2.5 to every parameter
    for got, start in zip(seen[2], model(), strict=True):
        np.testing.assert_allclose(got, start + 5.0, rtol=1e-12)
    # two fit replies per round, and the initial parameters when a client gave them
    assert len(made) == 4 + from_client
    for parameters in made:
        # sent without its tensors ever being built: each is still a header and a view of
        # an array the client returned
        for pieces in tensor_pieces(parameters):
            assert len(pieces) == 2 and isinstance(pieces[1], memoryview)


class Reworking(Client):
    """Wraps a NumPyClient; after its fit, keeps the reply and goes on changing the arrays
    fit returned, before returning the reply."""

    def __init__(self) -> None:
        self.returned: list[np.ndarray] = []
        self.replies: list[FitRes] = []

        class Inner(Offset):
            def fit(inner, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
                self.returned = [p + 1.0 for p in parameters]
                return self.returned, 1, {}

        self.inner = Inner(0.0, 1).to_client()

    def get_parameters(self, ins: Any) -> Any:
        return self.inner.get_parameters(ins)

    def fit(self, ins: FitIns) -> FitRes:
        reply = self.inner.fit(ins)
        for array in self.returned:
            array += 100.0  # after fit returned: not what this reply carries
        self.replies.append(reply)
        return reply

    def evaluate(self, ins: Any) -> Any:
        return self.inner.evaluate(ins)


def test_a_client_that_wraps_a_numpy_client_sends_what_fit_returned() -> None:
    client = Reworking()
    seen = federate([client])
    for got, start in zip(seen[2], model(), strict=True):
        np.testing.assert_allclose(got, start + 2.0, rtol=1e-12)
    assert [type(reply.parameters) for reply in client.replies] == [Parameters, Parameters]


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
def test_a_reply_from_arrays_encodes_to_the_same_bytes(
    paced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrays = [*model(), np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.float32(4.0)]
    status = fl.common.Status(fl.common.Code.OK, "Success")
    lazy = FitRes(status, ArrayParameters(arrays), 5, {"loss": 0.5})
    eager = FitRes(status, ndarrays_to_parameters(arrays), 5, {"loss": 0.5})
    options: dict[str, Any] = {"max_length": 2**31 - 1, "peer_limit": 2**31 - 1, "what": "x"}
    if not paced:  # one plain message
        # The arrays' headers are padded to place their data (serde.ALIGNMENT); unpadded,
        # the message is byte for byte the one made from the arrays' .npy bytes.
        aligned = serde.client_message_to_bytes(lazy)
        assert aligned != serde.client_message_to_bytes(eager)
        back = serde.client_message_from_bytes(aligned)
        assert isinstance(back, FitRes)
        assert (back.status, back.num_examples, back.metrics) == (status, 5, {"loss": 0.5})
        for got, want in zip(parameters_to_ndarrays(back.parameters), arrays, strict=True):
            np.testing.assert_array_equal(got, want)
            assert (got.dtype, got.shape) == (want.dtype, want.shape)
        monkeypatch.setattr(serde, "ALIGNMENT", 1)
        assert serde.client_message_to_bytes(lazy) == serde.client_message_to_bytes(eager)
        assert chunking.encode_frames(lazy, **options) == chunking.encode_frames(eager, **options)
        return
    options.update(paced_above=1024, paced_frame=64 * 1024)
    got = [chunking.parse_frame(f) for f in chunking.encode_frames(lazy, **options)]
    want = [chunking.parse_frame(f) for f in chunking.encode_frames(eager, **options)]
    assert len(got) == len(want) > 10
    for a, b in zip(got, want, strict=True):  # every field but the transfer's id
        assert (a.index, a.count, a.head, a.sizes, bytes(a.data)) == \
            (b.index, b.count, b.head, b.sizes, bytes(b.data))


@pytest.mark.parametrize("alignment", [serde.ALIGNMENT, 1], ids=["aligned", "unpadded"])
def test_the_server_reads_fedsilo_replies_as_aligned_arrays(
    alignment: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedsilo.server import server as server_module

    received: list[np.ndarray] = []
    check = server_module.check_fit_res

    def recording(*args: Any, **kwargs: Any) -> list[np.ndarray]:
        arrays = check(*args, **kwargs)
        received.extend(arrays)
        return arrays

    monkeypatch.setattr(server_module, "check_fit_res", recording)
    monkeypatch.setattr(serde, "ALIGNMENT", alignment)
    federate([Offset(1.0, 1), Offset(3.0, 3)])
    starts = [array.ctypes.data % 16 for array in received if array.size]
    assert len(starts) == 2 * 2 * len(model())  # two clients, two rounds
    if alignment > 1:  # every tensor's data at a multiple of 16 bytes in the server's memory
        assert set(starts) == {0}
    else:  # the control: the same replies unpadded land elsewhere
        assert set(starts) != {0}
