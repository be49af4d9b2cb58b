"""Every kind of unusable reply, sent over real gRPC beside two honest clients.

Each is refused with its reason and counted as that client's failure; the round
aggregates the honest clients only, and the server keeps serving.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import (
    ClientDisconnected,
    ClientFailure,
    EvaluateRes,
    FitIns,
    FitRes,
    InvalidUpdate,
    Status,
    chunking,
    serde,
)
from fedsilo.common.typing import Code
from fedsilo.server.validation import MAX_NUM_EXAMPLES
from tests.conftest import free_port
from tests.reliability.peers import (
    FirstRoundWaitsForAll,
    Honest,
    RawPeer,
    RecordingStrategy,
    ServerThread,
    expected_fedavg,
    fit_res_bytes,
    serve_raw,
    start_client_thread,
)

pytestmark = pytest.mark.timeout(60)

LIMIT = 1_000_000  # the server's message limit in these tests


def chunked_fit_res(arrays: list[np.ndarray]) -> list[bytes]:
    res = FitRes(Status(Code.OK, ""), fl.common.ndarrays_to_parameters(arrays), 5, {})
    return chunking.encode_frames(res, max_length=3000, peer_limit=3000, what="test")


def received(ins: FitIns) -> list[np.ndarray]:
    return [a.copy() for a in fl.common.parameters_to_ndarrays(ins.parameters)]


def with_value(ins: FitIns, value: float) -> list[np.ndarray]:
    arrays = received(ins)
    arrays[0][0, 0] = value
    return arrays


ANSWERS: dict[str, tuple[Any, type[ClientFailure], str]] = {
    "wrong dtype": (lambda ins: [fit_res_bytes([a.astype(np.float32) for a in received(ins)], 5)],
                    InvalidUpdate, "tensor 0 has dtype float32, the global model's is float64"),
    "wrong shape": (lambda ins: [fit_res_bytes([np.zeros((3, 4)), np.zeros(3)], 5)],
                    InvalidUpdate, "tensor 0 has shape (3, 4), the global model's is (4, 3)"),
    "too few tensors": (lambda ins: [fit_res_bytes(received(ins)[:1], 5)],
                        InvalidUpdate, "sent 1 tensors, the global model has 2"),
    "NaN": (lambda ins: [fit_res_bytes(with_value(ins, np.nan), 5)],
            InvalidUpdate, "tensor 0 holds NaN or Inf"),
    "Inf": (lambda ins: [fit_res_bytes(with_value(ins, -np.inf), 5)],
            InvalidUpdate, "tensor 0 holds NaN or Inf"),
    "negative count": (lambda ins: [fit_res_bytes(received(ins), -1)],
                       InvalidUpdate, "num_examples is negative (-1)"),
    "absurd count": (lambda ins: [fit_res_bytes(received(ins), MAX_NUM_EXAMPLES + 1)],
                     InvalidUpdate, f"exceeds the server's limit of {MAX_NUM_EXAMPLES}"),
    "empty oneof": (lambda ins: [b""], InvalidUpdate, "ClientMessage holds no known reply"),
    "not protobuf": (lambda ins: [b"\xff\xfe\xfd garbage"], InvalidUpdate, "unreadable reply"),
    "wrong reply type": (
        lambda ins: [serde.client_message_to_bytes(EvaluateRes(Status(Code.OK, ""), 0.1, 5, {}))],
        InvalidUpdate, "answered FitIns with EvaluateRes"),
    "over the size limit": (
        lambda ins: [fit_res_bytes([np.zeros(LIMIT // 8 + 10), np.zeros(3)], 5)],
        ClientDisconnected, f"a reply over the server's message limit of {LIMIT} bytes (raise "
                            "it with start_server(grpc_max_message_length=...))"),
    "chunk frames without their first": (
        lambda ins: chunked_fit_res([np.zeros(2000)])[1:], InvalidUpdate,
        "unreadable reply: a chunked message must start with frame 0"),
    "junk in a chunk frame": (lambda ins: [b"\x7a\x05\x08\x01"], InvalidUpdate,
                              "unreadable reply: unreadable chunk frame"),
}


@pytest.mark.parametrize("kind", sorted(ANSWERS))
def test_an_unusable_reply_is_a_failure_with_its_reason(kind: str) -> None:
    answer, failure_type, reason = ANSWERS[kind]
    address = f"127.0.0.1:{free_port()}"
    honest = [Honest(1.0, 10), Honest(3.0, 30)]
    strategy = RecordingStrategy(3)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=1, round_timeout=20),
                          grpc_max_message_length=LIMIT)
    for client in honest:
        start_client_thread(address, client, [], max_wait_time=20)
    peer = RawPeer(address)
    serve_raw(peer, answer)
    server.join(40)
    peer.close()
    (failure,) = strategy.failures[1]
    assert isinstance(failure, failure_type), failure
    assert reason in str(failure)
    assert strategy.results[1] == 2
    for got, want in zip(strategy.aggregated[1], expected_fedavg(honest, 1), strict=True):
        np.testing.assert_array_equal(got, want)


class SecondRoundAfterTheCutOff(FirstRoundWaitsForAll):
    """Round 2 starts once only ``later`` clients are connected (within 10 s).

    A duplicate is refused when it comes while no instruction is out. Nothing on the wire
    tells a copy from an answer, so had the next instruction gone out before the copy was
    read, the copy would have been taken as that answer; waiting keeps that from happening.
    """

    cut_off_before_round_2 = False

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        if server_round == 2:
            deadline = time.monotonic() + 10
            while client_manager.num_available() > self.later and time.monotonic() < deadline:
                time.sleep(0.01)
            self.cut_off_before_round_2 = client_manager.num_available() == self.later
        return super().configure_fit(server_round, parameters, client_manager)


def test_a_duplicate_reply_is_refused_and_the_client_is_cut_off() -> None:
    """Replies carry no request id: after a duplicate, later replies cannot be matched to
    instructions, so the server closes that client's stream with the reason."""
    address = f"127.0.0.1:{free_port()}"
    honest = [Honest(1.0, 10), Honest(3.0, 30)]
    strategy = SecondRoundAfterTheCutOff(3, 2)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=2, round_timeout=20))
    for client in honest:
        start_client_thread(address, client, [], max_wait_time=20)
    peer = RawPeer(address)
    raw = serve_raw(peer, lambda ins: [fit_res_bytes(received(ins), 5)] * 2)
    server.join(40)
    raw.join(10)
    assert isinstance(peer.ended, grpc.RpcError)
    assert peer.ended.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "duplicate or unsolicited reply" in peer.ended.details()
    # Round 1 counts the peer's first answer; round 2 goes on with the honest clients.
    assert strategy.results[1] == 3, strategy.failures
    assert strategy.cut_off_before_round_2
    assert strategy.results[2] == 2 and strategy.failures[2] == [], strategy.failures


def evaluate_res_bytes(loss: float, num_examples: int) -> bytes:
    return serde.client_message_to_bytes(
        EvaluateRes(Status(Code.OK, ""), loss, num_examples, {}))


@pytest.mark.parametrize(("loss", "count", "reason"), [
    (float("nan"), 5, "loss is nan"),
    (float("inf"), 5, "loss is inf"),
    (0.5, -3, "num_examples is negative (-3)"),
    (0.5, MAX_NUM_EXAMPLES + 1, "exceeds the server's limit"),
])
def test_an_unusable_evaluation_is_a_failure_and_the_loss_is_the_honest_clients(
    loss: float, count: int, reason: str
) -> None:
    address = f"127.0.0.1:{free_port()}"
    honest = [Honest(1.0, 10), Honest(3.0, 30)]
    strategy = RecordingStrategy(3, fraction_evaluate=1.0)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=1, round_timeout=20))
    for client in honest:
        start_client_thread(address, client, [], max_wait_time=20)
    peer = RawPeer(address)
    serve_raw(peer, lambda ins: [fit_res_bytes(received(ins), 20)] if isinstance(ins, FitIns)
              else [evaluate_res_bytes(loss, count)])
    history = server.join(40)
    peer.close()
    (failure,) = strategy.evaluate_failures[1]
    assert isinstance(failure, InvalidUpdate) and reason in str(failure)
    assert strategy.evaluate_results[1] == 2
    # The distributed loss is the honest clients' example-weighted mean, from their own
    # evaluate: the sum of the round-1 global model's parameters (as float32 on the wire).
    model_sum = float(sum(a.sum() for a in strategy.aggregated[1]))
    assert history.losses_distributed == [(1, pytest.approx(model_sum, rel=1e-6))]
