"""Calling many clients at once: the part of the round loop that sends instructions and
gathers replies, and Flower's ``fit_clients`` / ``evaluate_clients`` built on it.

A proxy that can ``submit`` costs no thread while its client works (gRPC streams); the
others are called from worker threads. A reply is checked as it arrives, and every failure
is an exception that says which client failed and why.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import queue
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fedsilo.common.exceptions import ClientFailure, ClientReportedError, ClientTimeout
from fedsilo.common.parameter import ARRAY_TENSOR_TYPES
from fedsilo.common.typing import Code, EvaluateIns, EvaluateRes, FitIns, FitRes
from fedsilo.server.client_proxy import ClientProxy, PendingReply
from fedsilo.server.validation import (
    MAX_NUM_EXAMPLES,
    check_evaluate_res,
    check_fit_res,
    check_num_examples,
)

log = logging.getLogger("fedsilo.server")

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "EvaluateResultsAndFailures",
    "FitResultsAndFailures",
    "call_clients",
    "checked_evaluate_res",
    "evaluate_clients",
    "fit_clients",
]

R = TypeVar("R")
Ins = TypeVar("Ins")
FitResultsAndFailures = tuple[
    list[tuple[ClientProxy, FitRes]], list[tuple[ClientProxy, FitRes] | BaseException]]
EvaluateResultsAndFailures = tuple[
    list[tuple[ClientProxy, EvaluateRes]], list[tuple[ClientProxy, EvaluateRes] | BaseException]]

DEFAULT_MAX_WORKERS = 512  # threads calling blocking proxies at once, unless set_max_workers


def call_clients(
    instructions: Sequence[tuple[ClientProxy, Ins]],
    method: str,
    process: Callable[[ClientProxy, Any], R],
    timeout: float | None,
    server_round: int,
    worker_pool: Callable[[], concurrent.futures.Executor],
    *,
    log_failures: bool = True,
) -> tuple[list[tuple[ClientProxy, R]], list[tuple[ClientProxy, R] | BaseException]]:
    """Send every instruction, then ``process`` each reply in this thread as it comes.

    ``log_failures=False`` leaves the failures' log lines to the caller (the round loop
    sums them up by kind).

    A proxy that can ``submit`` an instruction costs no thread while its client
    works; the others are called (``method``) from threads of ``worker_pool()``, which is
    asked for only when such a proxy comes. The results come back in the order the
    clients were sampled, whatever order they answered in.
    """
    done: queue.SimpleQueue[int] = queue.SimpleQueue()
    outcomes: dict[int, object] = {}
    pending: dict[int, PendingReply] = {}
    threaded: dict[int, concurrent.futures.Future[R]] = {}

    def blocking(client: ClientProxy, ins: Ins) -> R:
        return process(client, getattr(client, method)(ins, timeout, group_id=server_round))

    for index, (client, ins) in enumerate(instructions):
        submit = getattr(client, "submit", None)  # a proxy need not derive from ours
        try:
            notify = functools.partial(done.put, index)
            handle = None if submit is None else submit(ins, notify)
        except Exception as exc:  # not sent: that client's failure
            outcomes[index] = exc
            continue
        if handle is not None:
            pending[index] = handle
            continue
        future = worker_pool().submit(blocking, client, ins)
        future.add_done_callback(functools.partial(_put_index, done, index))
        threaded[index] = future
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(outcomes) < len(instructions):
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            index = done.get(timeout=remaining)
        except queue.Empty:  # the submitted ones that are still out have timed out
            for index, handle in pending.items():
                if index not in outcomes:
                    handle.cancel()
                    outcomes[index] = ClientTimeout(instructions[index][0].cid,
                                                    f"no reply within {timeout:g} s")
            deadline = None  # threaded calls time out by themselves
            continue
        if index in outcomes:
            continue
        try:
            if index in threaded:
                outcomes[index] = threaded[index].result()
            else:
                outcomes[index] = process(instructions[index][0], pending[index].result())
        except Exception as exc:  # recorded as that client's failure below
            outcomes[index] = exc
    results: list[tuple[ClientProxy, R]] = []
    failures: list[tuple[ClientProxy, R] | BaseException] = []
    for index, (client, _) in enumerate(instructions):
        outcome = outcomes[index]
        if not isinstance(outcome, BaseException):
            results.append((client, outcome))  # type: ignore[arg-type]
        elif isinstance(outcome, ClientFailure):
            failures.append(outcome)
        else:  # a bug in a proxy must not end the round
            wrapped = ClientFailure(client.cid, f"{type(outcome).__name__}: {outcome}")
            wrapped.__cause__ = outcome
            failures.append(wrapped)
    if log_failures:
        level = logging.DEBUG if method == "reconnect" else logging.WARNING
        what = "disconnect" if method == "reconnect" else method
        for failure in failures:
            log.log(level, "round %d %s: %s", server_round, what, failure)
    return results, failures


def fit_clients(
    client_instructions: list[tuple[ClientProxy, FitIns]],
    max_workers: int | None,
    timeout: float | None,
    group_id: int,
) -> FitResultsAndFailures:
    """Send each client its FitIns and gather the replies: ``(results, failures)``.

    Flower's function for custom ``Server`` subclasses, on fedsilo's round loop: clients
    on gRPC streams are waited for without a thread each, the others are called from up to
    ``max_workers`` threads. Each reply is checked as the round loop checks it (its
    parameters are decoded and checked when their ``tensor_type`` says numpy arrays); a
    client that fails, times out (``timeout`` seconds), reports a non-OK status or sends an
    invalid update is a ``ClientFailure`` in ``failures`` that says why.

    Parameters
    ----------
    client_instructions
        The ``(client, FitIns)`` pairs, as ``Strategy.configure_fit`` returns them.
    max_workers
        Threads for clients that can only be called blocking (None: the default).
    timeout
        Seconds each client has to answer (None: no limit).
    group_id
        The round number, passed to each client call.
    """
    return _call_clients_with_own_pool(client_instructions, "fit", _checked_fit_res,
                                       max_workers, timeout, group_id)


def evaluate_clients(
    client_instructions: list[tuple[ClientProxy, EvaluateIns]],
    max_workers: int | None,
    timeout: float | None,
    group_id: int,
) -> EvaluateResultsAndFailures:
    """Send each client its EvaluateIns and gather the replies: ``(results, failures)``.

    Flower's function for custom ``Server`` subclasses; the parameters and the handling of
    failures are those of :func:`fit_clients`.
    """
    return _call_clients_with_own_pool(client_instructions, "evaluate", checked_evaluate_res,
                                       max_workers, timeout, group_id)


def _call_clients_with_own_pool(
    instructions: Sequence[tuple[ClientProxy, Ins]],
    method: str,
    process: Callable[[ClientProxy, Any], R],
    max_workers: int | None,
    timeout: float | None,
    group_id: int,
) -> tuple[list[tuple[ClientProxy, R]], list[tuple[ClientProxy, R] | BaseException]]:
    """:func:`call_clients` with a thread pool of its own, made only if needed."""
    pool: list[concurrent.futures.ThreadPoolExecutor] = []

    def worker_pool() -> concurrent.futures.Executor:
        if not pool:
            pool.append(concurrent.futures.ThreadPoolExecutor(
                max_workers=max_workers or DEFAULT_MAX_WORKERS,
                thread_name_prefix="fedsilo-clients"))
        return pool[0]

    try:
        return call_clients(instructions, method, process, timeout, group_id, worker_pool)
    finally:
        for executor in pool:
            executor.shutdown(wait=False)


def _checked_fit_res(client: ClientProxy, res: FitRes,
                     max_num_examples: int = MAX_NUM_EXAMPLES) -> FitRes:
    """``res`` if its status is OK and its update is valid; else the failure."""
    try:
        if res.status.code != Code.OK:
            raise ClientReportedError(client.cid, res.status.message or res.status.code.name)
        if res.parameters.tensor_type in ARRAY_TENSOR_TYPES:
            check_fit_res(client.cid, res, None, max_num_examples)
        else:
            check_num_examples(client.cid, res.num_examples, max_num_examples)
        return res
    finally:
        client.release_reply()


def checked_evaluate_res(client: ClientProxy, res: EvaluateRes,
                         max_num_examples: int = MAX_NUM_EXAMPLES) -> EvaluateRes:
    """``res`` if its status is OK and its loss and count are valid; else the failure."""
    if res.status.code != Code.OK:
        raise ClientReportedError(client.cid, res.status.message or res.status.code.name)
    check_evaluate_res(client.cid, res, max_num_examples)
    return res


def _put_index(done: queue.SimpleQueue[int], index: int, _: object) -> None:
    done.put(index)
