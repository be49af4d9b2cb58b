"""The round loop: one loop for gRPC, in-process and simulated clients."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from fedsilo.common.exceptions import (
    CheckpointError,
    ClientFailure,
    ClientReportedError,
    ClientTimeout,
)
from fedsilo.common.parameter import ARRAY_TENSOR_TYPES, parameters_to_ndarrays
from fedsilo.common.typing import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    NDArrays,
    Parameters,
    ReconnectIns,
    Scalar,
)
from fedsilo.server.checkpoint import (
    DEFAULT_KEEP,
    RoundCheckpoint,
    load_latest,
    lock_directory,
    save_checkpoint,
)
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy, PendingReply
from fedsilo.server.history import History
from fedsilo.server.strategy import FedAvg, Strategy
from fedsilo.server.validation import (
    MAX_NUM_EXAMPLES,
    check_evaluate_res,
    check_fit_res,
    check_num_examples,
)

log = logging.getLogger("fedsilo.server")

__all__ = [
    "EvaluateResultsAndFailures",
    "FitResultsAndFailures",
    "Server",
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


class Server:
    """Runs rounds: configure, call clients in parallel, validate, aggregate, evaluate.

    ``checkpoint_dir`` makes the run resumable: the state after every round is
    written there (the newest ``checkpoint_keep`` rounds are kept), and ``fit``
    continues from the newest checkpoint it finds.
    """

    def __init__(
        self,
        *,
        client_manager: ClientManager,
        strategy: Strategy | None = None,
        max_num_examples: int = MAX_NUM_EXAMPLES,
        checkpoint_dir: str | Path | None = None,
        checkpoint_keep: int = DEFAULT_KEEP,
    ) -> None:
        self._client_manager = client_manager
        self.strategy: Strategy = strategy if strategy is not None else FedAvg()
        self.max_num_examples = max_num_examples
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_keep = checkpoint_keep
        self.parameters = Parameters(tensors=[], tensor_type="numpy.ndarray")
        self.max_workers: int | None = None
        # Threads that call proxies without ``submit`` (in-process and simulated clients);
        # made on first need and kept across rounds, since starting and ending one thread per
        # client every round costs more than a small model's round. Clients on gRPC streams
        # need none: the round loop submits to them and waits for all from its own thread.
        self._workers: concurrent.futures.ThreadPoolExecutor | None = None
        self._workers_size = 0
        self.on_round_end: Callable[[int, History], None] | None = None

    def client_manager(self) -> ClientManager:
        return self._client_manager

    def set_max_workers(self, max_workers: int | None) -> None:
        self.max_workers = max_workers

    def set_strategy(self, strategy: Strategy) -> None:
        self.strategy = strategy

    # The loop ---------------------------------------------------------------

    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        """Run rounds up to ``num_rounds``; return the History and the elapsed seconds.

        With a ``checkpoint_dir`` that holds a checkpoint, the run continues after
        the round it records instead of starting over; a checkpoint is written
        after the initial parameters (round 0) and after every round.
        """
        try:
            if self.checkpoint_dir is None:
                return self._fit(num_rounds, timeout)
            with lock_directory(self.checkpoint_dir):
                return self._fit(num_rounds, timeout)
        finally:
            self._stop_workers()

    def _fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        started = time.monotonic()
        resumed = self._resume()
        if resumed is None:
            history = History()
            self.parameters = self._initial_parameters(timeout)
            self._evaluate_centralized(0, history)
            self._checkpoint(0, history)
            self._notify(0, history)
            first_round = 1
        else:
            history, first_round = resumed.history, resumed.server_round + 1
        for server_round in range(first_round, num_rounds + 1):
            round_started = time.monotonic()
            fitted = self.fit_round(server_round, timeout)
            fit_line = "no clients"
            if fitted is not None:
                parameters, fit_metrics, (results, failures) = fitted
                if parameters is not None:
                    self.parameters = parameters
                history.add_metrics_distributed_fit(server_round, fit_metrics)
                fit_line = f"{len(results)} trained, {len(failures)} failed"
            central = self._evaluate_centralized(server_round, history)
            evaluated = self.evaluate_round(server_round, timeout)
            distributed = ""
            if evaluated is not None:
                loss, metrics, _ = evaluated
                if loss is not None:
                    history.add_loss_distributed(server_round, loss)
                    history.add_metrics_distributed(server_round, metrics)
                    distributed = f", distributed loss {loss:.4f}"
            log.info("round %d/%d: %s%s%s (%.2f s)", server_round, num_rounds, fit_line,
                     central, distributed, time.monotonic() - round_started)
            self._checkpoint(server_round, history)
            self._notify(server_round, history)
        return history, time.monotonic() - started

    # Checkpoints ------------------------------------------------------------

    def _checkpoint(self, server_round: int, history: History) -> None:
        if self.checkpoint_dir is None:
            return
        state = RoundCheckpoint(
            server_round=server_round,
            parameters=self.parameters,
            history=history,
            strategy_type=type(self.strategy).__name__,
            strategy_state=self.strategy.state_dict(),
            client_manager_state=self._client_manager.state_dict(),
        )
        try:
            path = save_checkpoint(self.checkpoint_dir, state, keep=self.checkpoint_keep)
        except OSError as exc:
            if server_round == 0:  # a directory that cannot be written: say so before training
                raise
            # A full disk must not end a long run: the next round writes a complete one again.
            log.error("round %d: checkpoint not written (%s); the run goes on, the next round "
                      "tries again", server_round, exc)
            return
        log.debug("round %d checkpointed in %s", server_round, path)

    def _resume(self) -> RoundCheckpoint | None:
        """Load the newest checkpoint into this server, or None to start afresh."""
        if self.checkpoint_dir is None:
            return None
        checkpoint = load_latest(self.checkpoint_dir)
        if checkpoint is None:
            return None
        if checkpoint.strategy_type != type(self.strategy).__name__:
            raise CheckpointError(
                f"the checkpoint in {self.checkpoint_dir} was written by a "
                f"{checkpoint.strategy_type} strategy, this server runs "
                f"{type(self.strategy).__name__}; resume with the same strategy or use an "
                "empty checkpoint directory")
        self.strategy.load_state_dict(checkpoint.strategy_state)
        self._client_manager.load_state_dict(checkpoint.client_manager_state)
        self.parameters = checkpoint.parameters
        log.info("resuming from the checkpoint of round %d in %s", checkpoint.server_round,
                 self.checkpoint_dir)
        return checkpoint

    def _notify(self, server_round: int, history: History) -> None:
        if self.on_round_end is not None:
            self.on_round_end(server_round, history)

    def _evaluate_centralized(self, server_round: int, history: History) -> str:
        result = self.strategy.evaluate(server_round, parameters=self.parameters)
        if result is None:
            return ""
        loss, metrics = result
        history.add_loss_centralized(server_round, loss)
        history.add_metrics_centralized(server_round, metrics)
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())
        if server_round == 0:
            log.info("initial parameters: centralized loss %.4f %s", loss, shown)
        return f", centralized loss {loss:.4f} {shown}".rstrip()

    def _initial_parameters(self, timeout: float | None) -> Parameters:
        parameters = self.strategy.initialize_parameters(client_manager=self._client_manager)
        if parameters is not None:
            log.info("initial parameters from the strategy")
            return parameters
        # Ask clients one at a time until one answers with usable parameters.
        tried: set[str] = set()
        while True:
            candidates = [c for c in self._client_manager.sample(1) if c.cid not in tried]
            if not candidates:
                others = self._untried(tried)
                if not others:
                    others = self._wait_for_untried(tried)
                if not others:
                    raise RuntimeError(
                        "no client could provide initial parameters; give the strategy "
                        "initial_parameters or check the clients' get_parameters"
                    )
                candidates = others[:1]
            client = candidates[0]
            tried.add(client.cid)
            try:
                res = client.get_parameters(GetParametersIns(config={}), timeout, group_id=0)
                if res.status.code != Code.OK:
                    raise ClientReportedError(client.cid, res.status.message)
                if self.strategy.parameters_are_arrays:
                    parameters_to_ndarrays(res.parameters)
            except Exception as exc:  # any failure: ask another client
                log.warning("initial parameters from client %s failed: %s", client.cid, exc)
                continue
            log.info("initial parameters from client %s", client.cid)
            return res.parameters

    def _untried(self, tried: set[str]) -> list[ClientProxy]:
        """Connected clients not yet asked for initial parameters, in id order."""
        return [c for cid, c in sorted(self._client_manager.all().items()) if cid not in tried]

    def _wait_for_untried(self, tried: set[str]) -> list[ClientProxy]:
        """Every connected client failed to give initial parameters: wait, as sampling does
        (up to the client manager's ``wait_timeout``), for a client that has not been asked,
        e.g. one that reconnects after dropping."""
        limit = float(getattr(self._client_manager, "wait_timeout", 86400.0))
        deadline = time.monotonic() + limit
        log.warning("no connected client can give initial parameters; waiting up to %g s for "
                    "another client to join", limit)
        while time.monotonic() < deadline:
            others = self._untried(tried)
            if others:
                return others
            time.sleep(0.05)
        return []

    def fit_round(
        self, server_round: int, timeout: float | None
    ) -> tuple[Parameters | None, dict[str, Scalar], FitResultsAndFailures] | None:
        """Train on the sampled clients and aggregate; None when no client was sampled."""
        instructions = self.strategy.configure_fit(
            server_round=server_round, parameters=self.parameters,
            client_manager=self._client_manager)
        if not instructions:
            log.info("round %d: no clients selected for training", server_round)
            return None
        log.info("round %d: fit sampled %d clients (out of %d)", server_round,
                 len(instructions), self._client_manager.num_available())
        as_arrays = self.strategy.parameters_are_arrays
        reference = _decode_or_none(self.parameters) if as_arrays else None
        accumulator = self.strategy.fit_accumulator(server_round, self.parameters)
        fold_lock = threading.Lock()

        def fold(client: ClientProxy, res: FitRes) -> FitRes:
            try:
                if res.status.code != Code.OK:
                    raise ClientReportedError(client.cid,
                                              res.status.message or res.status.code.name)
                if not as_arrays:
                    check_num_examples(client.cid, res.num_examples, self.max_num_examples)
                    return res
                arrays = check_fit_res(client.cid, res, reference, self.max_num_examples)
                if accumulator is None:
                    return res
                with fold_lock:
                    accumulator.add(client, res, arrays)
                # Folded in: release the tensors so the round holds one model, not one per
                # client.
                del arrays
                return FitRes(res.status, Parameters([], res.parameters.tensor_type),
                              res.num_examples, res.metrics)
            finally:
                del res
                client.release_reply()  # the transport may read the next large reply

        results, failures = _call_clients(instructions, "fit", fold, timeout, server_round,
                                          self._worker_pool)
        log.info("round %d: fit received %d results and %d failures", server_round,
                 len(results), len(failures))
        if accumulator is not None:
            parameters, metrics = accumulator.finish(results, failures)  # type: ignore[arg-type]
        else:
            parameters, metrics = self.strategy.aggregate_fit(
                server_round, results, failures)  # type: ignore[arg-type]
        return parameters, metrics, (results, failures)

    def evaluate_round(
        self, server_round: int, timeout: float | None
    ) -> tuple[float | None, dict[str, Scalar], EvaluateResultsAndFailures] | None:
        """Evaluate on the sampled clients; None when no client was sampled."""
        instructions = self.strategy.configure_evaluate(
            server_round=server_round, parameters=self.parameters,
            client_manager=self._client_manager)
        if not instructions:
            return None
        log.info("round %d: evaluate sampled %d clients (out of %d)", server_round,
                 len(instructions), self._client_manager.num_available())
        check = functools.partial(_checked_evaluate_res, max_num_examples=self.max_num_examples)
        results, failures = _call_clients(instructions, "evaluate", check, timeout,
                                          server_round, self._worker_pool)
        log.info("round %d: evaluate received %d results and %d failures", server_round,
                 len(results), len(failures))
        loss, metrics = self.strategy.aggregate_evaluate(
            server_round, results, failures)  # type: ignore[arg-type]
        return loss, metrics, (results, failures)

    def disconnect_all_clients(self, timeout: float | None) -> None:
        """Tell every connected client that the federation is over."""
        clients = list(self._client_manager.all().values())
        if not clients:
            return
        instructions = [(c, ReconnectIns(seconds=None)) for c in clients]
        try:
            _call_clients(instructions, "reconnect", lambda client, res: res, timeout, 0,
                          self._worker_pool)
        finally:
            self._stop_workers()

    def _worker_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """The threads that call clients: made once, grown only as more are needed."""
        size = self.max_workers or DEFAULT_MAX_WORKERS
        if self._workers is None or self._workers_size != size:
            self._stop_workers()
            self._workers = concurrent.futures.ThreadPoolExecutor(
                max_workers=size, thread_name_prefix="fedsilo-round")
            self._workers_size = size
        return self._workers

    def _stop_workers(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=False)
            self._workers = None


def _call_clients(
    instructions: Sequence[tuple[ClientProxy, Ins]],
    method: str,
    process: Callable[[ClientProxy, Any], R],
    timeout: float | None,
    server_round: int,
    worker_pool: Callable[[], concurrent.futures.Executor],
) -> tuple[list[tuple[ClientProxy, R]], list[tuple[ClientProxy, R] | BaseException]]:
    """Send every instruction, then ``process`` each reply in this thread as it comes.

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
            handle = None if submit is None else submit(ins, functools.partial(done.put,
                                                                               index))
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
    return _call_clients_once(client_instructions, "fit", _checked_fit_res, max_workers,
                              timeout, group_id)  # type: ignore[return-value]


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
    return _call_clients_once(client_instructions, "evaluate", _checked_evaluate_res,
                              max_workers, timeout, group_id)  # type: ignore[return-value]


def _call_clients_once(
    instructions: Sequence[tuple[ClientProxy, Ins]],
    method: str,
    process: Callable[[ClientProxy, Any], R],
    max_workers: int | None,
    timeout: float | None,
    group_id: int,
) -> tuple[list[tuple[ClientProxy, R]], list[tuple[ClientProxy, R] | BaseException]]:
    """:func:`_call_clients` with a thread pool of its own, made only if needed."""
    pool: list[concurrent.futures.ThreadPoolExecutor] = []

    def worker_pool() -> concurrent.futures.Executor:
        if not pool:
            pool.append(concurrent.futures.ThreadPoolExecutor(
                max_workers=max_workers or DEFAULT_MAX_WORKERS,
                thread_name_prefix="fedsilo-clients"))
        return pool[0]

    try:
        return _call_clients(instructions, method, process, timeout, group_id, worker_pool)
    finally:
        for executor in pool:
            executor.shutdown(wait=False)


def _checked_fit_res(client: ClientProxy, res: FitRes,
                     max_num_examples: int = MAX_NUM_EXAMPLES) -> FitRes:
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


def _checked_evaluate_res(client: ClientProxy, res: EvaluateRes,
                          max_num_examples: int = MAX_NUM_EXAMPLES) -> EvaluateRes:
    if res.status.code != Code.OK:
        raise ClientReportedError(client.cid, res.status.message or res.status.code.name)
    check_evaluate_res(client.cid, res, max_num_examples)
    return res


def _put_index(done: queue.SimpleQueue[int], index: int, _: object) -> None:
    done.put(index)


def _decode_or_none(parameters: Parameters) -> NDArrays | None:
    if not parameters.tensors:
        return None
    return parameters_to_ndarrays(parameters)


def _fmt(value: Scalar) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
