"""The bridge's part in refusing duplicate replies (unit tests, no network)."""

from __future__ import annotations

import threading
import time

from fedsilo.server.grpc.bridge import InstructionBridge


def test_a_reply_while_nothing_is_out_is_reported_as_unsolicited() -> None:
    bridge = InstructionBridge("c")
    assert bridge.deliver(b"nobody asked") is False


def test_a_duplicate_after_the_answer_is_reported_and_not_handed_to_anyone() -> None:
    bridge = InstructionBridge("c")
    outcomes: list[bool] = []

    def stream() -> None:
        assert bridge.next_message() == b"ins"
        outcomes.append(bridge.deliver(b"answer"))
        outcomes.append(bridge.deliver(b"answer again"))

    threading.Thread(target=stream).start()
    assert bridge.request(b"ins", timeout=5) == b"answer"
    time.sleep(0.1)
    assert outcomes == [True, False]


def test_the_next_instruction_waits_until_the_previous_one_is_answered() -> None:
    bridge = InstructionBridge("c")
    sent: list[object] = []

    def stream() -> None:
        sent.append(bridge.next_message())  # "one", then the client is slow
        second = threading.Thread(target=lambda: sent.append(bridge.next_message()))
        second.start()
        time.sleep(0.3)
        assert sent == [b"one"]  # "two" is queued but held back while "one" is out
        bridge.deliver(b"late answer to one")
        second.join(5)
        bridge.deliver(b"answer to two")

    threading.Thread(target=stream).start()
    try:
        bridge.request(b"one", timeout=0.1)
    except TimeoutError:
        pass
    assert bridge.request(b"two", timeout=5) == b"answer to two"
    assert sent == [b"one", b"two"]


def test_a_farewell_waits_for_the_reply_in_flight() -> None:
    bridge = InstructionBridge("c")

    def busy_request() -> None:
        try:
            bridge.request(b"fit", timeout=0.1)
        except TimeoutError:
            pass

    threading.Thread(target=busy_request, daemon=True).start()
    assert bridge.next_message() == b"fit"
    time.sleep(0.2)  # the request has timed out; the client is still busy
    bridge.close("the federation ended", farewell=b"reconnect")
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(bridge.next_message()))
    reader.start()
    time.sleep(0.2)
    assert got == []  # not before the busy client answered
    assert bridge.deliver(b"late fit reply") is True
    reader.join(5)
    assert got == [b"reconnect"]
    assert bridge.next_message() is None
