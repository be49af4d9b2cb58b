from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fedsilo.common import ClientDisconnected, ClientTimeout
from fedsilo.server.grpc.bridge import NOT_DUE, InstructionBridge
from fedsilo.server.grpc.servicer import ReplySlots, _Wakeups


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


class Releases:
    """Counts the calls of a reply's release callback."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_a_replys_slot_is_released_once_by_whoever_is_done_with_it() -> None:
    bridge = InstructionBridge("c")
    first, second = Releases(), Releases()

    def stream() -> None:
        assert bridge.next_message() == b"one"
        bridge.deliver(b"reply one", first)
        assert bridge.next_message() == b"two"
        bridge.deliver(b"reply two", second)

    threading.Thread(target=stream).start()
    assert bridge.request(b"one", timeout=5) == b"reply one"
    assert first.calls == 0  # still held: the caller has not said it is done
    bridge.release_reply()
    bridge.release_reply()
    assert first.calls == 1
    assert bridge.request(b"two", timeout=5) == b"reply two"
    assert second.calls == 0
    # Sending the next instruction means the last reply is done with, whoever forgot to say.
    threading.Thread(target=lambda: (bridge.next_message(), bridge.deliver(b"3"))).start()
    assert bridge.request(b"three", timeout=5) == b"3"
    assert second.calls == 1


def test_a_late_replys_slot_is_released_when_the_reply_is_dropped() -> None:
    bridge = InstructionBridge("c")
    sent = threading.Event()
    threading.Thread(target=lambda: (bridge.next_message(), sent.set())).start()
    with pytest.raises(ClientTimeout):
        bridge.request(b"one", timeout=0.3)
    assert sent.wait(5)
    late = Releases()
    assert bridge.deliver(b"late reply", late)
    assert late.calls == 1


def test_closing_gives_back_the_slot_of_a_reply_nobody_released() -> None:
    bridge = InstructionBridge("c")
    held = Releases()
    threading.Thread(target=lambda: (bridge.next_message(), bridge.deliver(b"r", held))).start()
    assert bridge.request(b"one", timeout=5) == b"r"
    bridge.close("the client disconnected")
    assert held.calls == 1
    bridge.release_reply()  # the round loop's own release comes later: not a second one
    assert held.calls == 1


def test_poll_reports_not_due_and_the_change_callback_fires_when_it_may_be_due() -> None:
    changes = []
    bridge = InstructionBridge("c", on_change=lambda: changes.append(bridge.closed))
    assert bridge.poll_message() is NOT_DUE and not changes
    answered: list[object] = []
    asking = threading.Thread(target=lambda: answered.append(bridge.request(b"ins", 5)))
    asking.start()
    deadline = time.monotonic() + 5
    while not changes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert changes == [False]  # the instruction was queued
    assert bridge.poll_message() == b"ins"
    assert bridge.poll_message() is NOT_DUE  # in flight: the next waits for the reply
    bridge.deliver(b"reply")
    asking.join(5)
    assert answered == [b"reply"] and len(changes) == 2
    bridge.close("done", farewell=b"bye")
    assert changes[-1] is True
    assert bridge.poll_message() == b"bye"
    assert bridge.poll_message() is None


def test_reply_slots_wait_for_a_release_from_another_thread_and_time_out() -> None:
    slots = ReplySlots(1)

    async def scenario() -> tuple[bool, bool, bool, float]:
        first = await slots.take(5, lambda: False)
        threading.Timer(0.1, slots.release).start()
        started = time.monotonic()
        second = await slots.take(5, lambda: False)  # woken by the release
        waited = time.monotonic() - started
        third = await slots.take(0.3, lambda: False)  # nobody releases: times out
        return first, second, third, waited

    first, second, third, waited = asyncio.run(scenario())
    assert first and second and not third
    assert waited < 4  # woken by the release, not by the 5 s limit


def test_reply_slots_stop_waiting_once_told_to_give_up() -> None:
    slots = ReplySlots(1)
    gone = threading.Event()

    async def scenario() -> tuple[bool, bool]:
        held = await slots.take(5, lambda: False)
        threading.Timer(0.1, gone.set).start()
        return held, await slots.take(30, gone.is_set)

    started = time.monotonic()
    assert asyncio.run(scenario()) == (True, False)
    assert time.monotonic() - started < 20


class Notifications:
    """Counts ``notify`` calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.event.set()


def test_a_submitted_instruction_notifies_once_its_reply_is_in() -> None:
    bridge = InstructionBridge("c")
    notify = Notifications()
    ticket = bridge.submit(b"ins", notify)
    with pytest.raises(RuntimeError, match="no reply to collect yet"):
        bridge.collect(ticket)
    assert notify.calls == 0
    threading.Thread(target=lambda: (bridge.next_message(), bridge.deliver(b"reply"))).start()
    assert notify.event.wait(5)
    assert bridge.collect(ticket) == b"reply"
    assert notify.calls == 1
    bridge.close("done")  # nothing waits any more: no second notification
    assert notify.calls == 1


def test_closing_notifies_what_was_submitted_and_collect_then_fails() -> None:
    bridge = InstructionBridge("c")
    notify = Notifications()
    ticket = bridge.submit(b"ins", notify)
    bridge.close("the client's stream ended")
    assert notify.calls == 1
    with pytest.raises(ClientDisconnected, match="stream ended"):
        bridge.collect(ticket)
    with pytest.raises(ClientDisconnected):
        bridge.submit(b"next", notify)


def test_an_abandoned_submission_is_not_notified_and_its_late_reply_is_dropped() -> None:
    bridge = InstructionBridge("c")
    notify, slot = Notifications(), Releases()
    ticket = bridge.submit(b"one", notify)
    assert bridge.poll_message() == b"one"
    bridge.abandon(ticket)
    assert bridge.deliver(b"late", slot) is True  # read and dropped
    assert notify.calls == 0 and slot.calls == 1
    second = Notifications()
    ticket = bridge.submit(b"two", second)
    assert bridge.poll_message() == b"two"
    bridge.deliver(b"reply to two")
    assert second.calls == 1 and bridge.collect(ticket) == b"reply to two"


def test_wakeups_from_many_threads_set_every_event_on_the_loop() -> None:
    async def scenario() -> None:
        wakeups = _Wakeups(asyncio.get_running_loop())
        events = [asyncio.Event() for _ in range(400)]
        wakers = [wakeups.waker(event) for event in events]
        threads = [threading.Thread(target=lambda part=part: [w() for w in part])
                   for part in (wakers[i::4] for i in range(4))]
        for thread in threads:
            thread.start()
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in events)), 10)
        for thread in threads:
            thread.join()
        wakers[0]()  # from the loop's own thread: set at once
        assert events[0].is_set()
        # Again after the batch: a later wake-up is not lost behind the earlier one.
        late = asyncio.Event()
        threading.Thread(target=wakeups.waker(late)).start()
        await asyncio.wait_for(late.wait(), 10)

    asyncio.run(scenario())
