from __future__ import annotations

import threading

import pytest

from fedsilo.common import ClientDisconnected, ClientTimeout
from fedsilo.server.grpc.bridge import InstructionBridge


def test_reply_reaches_the_waiting_request() -> None:
    bridge = InstructionBridge("c")

    def stream() -> None:
        assert bridge.next_message() == b"ins"
        bridge.deliver(b"reply")

    threading.Thread(target=stream).start()
    assert bridge.request(b"ins", timeout=5) == b"reply"


def test_late_reply_is_dropped_and_not_taken_for_the_next_answer() -> None:
    bridge = InstructionBridge("c")
    sent = threading.Event()

    def first_send() -> None:
        assert bridge.next_message() == b"one"
        sent.set()

    threading.Thread(target=first_send).start()
    with pytest.raises(ClientTimeout):
        bridge.request(b"one", timeout=0.3)
    assert sent.wait(5)
    bridge.deliver(b"late reply to one")  # arrives after the timeout

    def second() -> None:
        assert bridge.next_message() == b"two"
        bridge.deliver(b"reply to two")

    threading.Thread(target=second).start()
    assert bridge.request(b"two", timeout=5) == b"reply to two"


def test_an_unsent_timed_out_instruction_is_never_sent() -> None:
    bridge = InstructionBridge("c")
    with pytest.raises(ClientTimeout):
        bridge.request(b"stale", timeout=0.05)
    threading.Thread(target=lambda: bridge.deliver(b"r2") if bridge.next_message() == b"fresh"
                     else None).start()
    assert bridge.request(b"fresh", timeout=5) == b"r2"


def test_close_fails_waiting_and_future_requests() -> None:
    bridge = InstructionBridge("c")
    threading.Timer(0.1, lambda: bridge.close("gone")).start()
    with pytest.raises(ClientDisconnected, match="gone"):
        bridge.request(b"x", timeout=5)
    with pytest.raises(ClientDisconnected):
        bridge.request(b"y", timeout=5)
    assert bridge.next_message() is None
