"""The round loop: one loop for gRPC, in-process and simulated clients."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedsilo.common.exceptions import (
    CheckpointError,
    ClientFailure,
    ClientReportedError,
    ClientTimeout,
)
from fedsilo.common.parameter import parameters_to_ndarrays
from fedsilo.common.typing import (
    Code,
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
    check_parameters_match,
    latest_round,
    load_latest,
    lock_directory,
    save_checkpoint,
)
from fedsilo.server.client_calls import (
    DEFAULT_MAX_WORKERS,
    EvaluateResultsAndFailures,
    FitResultsAndFailures,
    call_clients,
    checked_evaluate_res,
    evaluate_clients,
    fit_clients,
)
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.health import DEFAULT_MAX_FAILURES, ClientHealth
from fedsilo.server.history import History
from fedsilo.server.strategy import FedAvg, Strategy
from fedsilo.server.validation import MAX_NUM_EXAMPLES, check_fit_res, check_num_examples

log = logging.getLogger("fedsilo.server")

__all__ = [
    "EvaluateResultsAndFailures",
    "FitResultsAndFailures",
    "Server",
    "evaluate_clients",
    "fit_clients",
]

_KINDS_SHOWN = 5  # kinds of failure logged per phase of a round, at most


class Server:
    """Runs rounds: configure, call clients in parallel, validate, aggregate, evaluate.

    ``checkpoint_dir`` makes the run resumable: the state after every round is
    written there (the newest ``checkpoint_keep`` rounds are kept), and ``fit``
    continues from the newest checkpoint it finds.

    ``max_consecutive_failures``: a client that fails or times out this many rounds
    in a row is no longer sampled until it answers a liveness probe or reconnects
    (see ``fedsilo.server.health``; 0 turns it off).

    The ``timeout`` of ``fit`` applies to the fit phase and to the evaluate phase of
    a round separately, as in Flower. A client whose fit got no reply within it is
    not sent the round's evaluation (its stream still waits for that fit reply, so
    the evaluation could not even be sent): it fails at once, and a client that hangs
    makes a round last at most ``timeout`` longer.
    """

    def __init__(
        self,
        *,
        client_manager: ClientManager,
        strategy: Strategy | None = None,
        max_num_examples: int = MAX_NUM_EXAMPLES,
        checkpoint_dir: str | Path | None = None,
        checkpoint_keep: int = DEFAULT_KEEP,
        max_consecutive_failures: int = DEFAULT_MAX_FAILURES,
    ) -> None:
        self._client_manager = client_manager
        self._health = ClientHealth(max_consecutive_failures)
        self._fit_timeouts: set[str] = set()  # clients whose fit of this round timed out
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
        # Set from any thread to end the run: the phase in progress is not aggregated and no
        # later round starts; ``fit`` returns the History of the rounds completed so far.
        self.stop_requested = threading.Event()
        self._loaded: RoundCheckpoint | None = None  # read by load_checkpoint, for fit

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
        resumed = self._resume(num_rounds, timeout)
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
            if self.stop_requested.is_set():
                break
            self._health.probe(timeout, self._worker_pool)
            fitted = self.fit_round(server_round, timeout)
            if self.stop_requested.is_set():
                log.info("round %d: stopped on request; its results are not aggregated",
                         server_round)
                break
            fit_line = "no clients"
            if fitted is not None:
                parameters, fit_metrics, (results, failures) = fitted
                if parameters is not None:
                    self.parameters = parameters
                history.add_metrics_distributed_fit(server_round, fit_metrics)
                _add_failures(history, server_round, failures)
                fit_line = f"{len(results)} trained, {len(failures)} failed"
            central = self._evaluate_centralized(server_round, history)
            evaluated = self.evaluate_round(server_round, timeout)
            distributed = ""
            if evaluated is not None:
                loss, metrics, (_, evaluate_failures) = evaluated
                _add_failures(history, server_round, evaluate_failures)
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

    def load_checkpoint(self) -> RoundCheckpoint | None:
        """Read and check the newest checkpoint of ``checkpoint_dir`` (None: there is none).

        ``start_server`` calls it before it listens, so that a damaged checkpoint, or one
        of another strategy or another model, is refused before any client joins:
        ``CheckpointError`` naming the directory and what to do. ``fit`` then resumes
        from what it read, unless a newer checkpoint appeared in between.
        """
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
        initial = self.strategy.initialize_parameters(client_manager=self._client_manager)
        if initial is not None:
            check_parameters_match(checkpoint, initial, "the strategy's initial parameters",
                                   self.checkpoint_dir)
        self._loaded = checkpoint
        return checkpoint

    def _resume(self, num_rounds: int, timeout: float | None) -> RoundCheckpoint | None:
        """Load the newest checkpoint into this server, or None to start afresh."""
        if self.checkpoint_dir is None:
            return None
        loaded, self._loaded = self._loaded, None
        if loaded is None or latest_round(self.checkpoint_dir) != loaded.server_round:
            loaded = self.load_checkpoint()
            self._loaded = None
        if loaded is None:
            return None
        if loaded.server_round < num_rounds and self.strategy.initialize_parameters(
                client_manager=self._client_manager) is None:
            # Nothing to compare with before a client joined: ask one, as a fresh run would.
            reference = self._initial_parameters(timeout)
            check_parameters_match(loaded, reference, "the parameters of the first client "
                                   "that answered", self.checkpoint_dir)
        self.strategy.load_state_dict(loaded.strategy_state)
        self._client_manager.load_state_dict(loaded.client_manager_state)
        self.parameters = loaded.parameters
        log.info("resuming from the checkpoint of round %d in %s", loaded.server_round,
                 self.checkpoint_dir)
        return loaded

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

    def _get_initial_parameters(self, server_round: int, timeout: float | None) -> Parameters:
        """Flower's name for the initial parameters, for custom servers that override
        ``fit`` and call it (``server_round`` is 0 there, as in Flower)."""
        return self._initial_parameters(timeout)

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
        self._fit_timeouts = set()
        instructions = self.strategy.configure_fit(
            server_round=server_round, parameters=self.parameters,
            client_manager=self._health.sampling_view(self._client_manager))
        if not instructions:
            log.info("round %d: no clients selected for training", server_round)
            return None
        log.info("round %d: fit sampled %d clients (out of %d)", server_round,
                 len(instructions), self._client_manager.num_available())
        as_arrays = self.strategy.parameters_are_arrays
        reference = _decode_or_none(self.parameters) if as_arrays else None
        accumulator = (self.strategy.fit_accumulator(server_round, self.parameters)
                       if as_arrays else None)
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

        results, failures = self._call_clients(instructions, "fit", fold, timeout,
                                               server_round)
        if self.stop_requested.is_set():
            return None
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
            client_manager=self._health.sampling_view(self._client_manager))
        if not instructions:
            return None
        log.info("round %d: evaluate sampled %d clients (out of %d)", server_round,
                 len(instructions), self._client_manager.num_available())
        check = functools.partial(checked_evaluate_res, max_num_examples=self.max_num_examples)
        results, failures = self._call_clients(instructions, "evaluate", check, timeout,
                                               server_round)
        log.info("round %d: evaluate received %d results and %d failures", server_round,
                 len(results), len(failures))
        loss, metrics = self.strategy.aggregate_evaluate(
            server_round, results, failures)  # type: ignore[arg-type]
        return loss, metrics, (results, failures)

    def _call_clients(
        self,
        instructions: Sequence[tuple[ClientProxy, Any]],
        method: str,
        process: Callable[[ClientProxy, Any], Any],
        timeout: float | None,
        server_round: int,
    ) -> tuple[list[tuple[ClientProxy, Any]], list[Any]]:
        """``call_clients`` plus what the round loop keeps: each client's health, the fits
        that timed out (those clients are not asked to evaluate in the same round, as their
        streams still wait for the fit's reply), and one log line per kind of failure."""
        skipped: list[BaseException] = []
        if method == "evaluate":
            kept = []
            for client, ins in instructions:
                if client.cid in self._fit_timeouts:
                    skipped.append(ClientTimeout(
                        client.cid, "not asked to evaluate: its fit of this round got no "
                        "reply in time, and its stream waits for that reply first"))
                else:
                    kept.append((client, ins))
            instructions = kept
        results, failures = call_clients(instructions, method, process, timeout,
                                         server_round, self._worker_pool, log_failures=False)
        failures = [*failures, *skipped]
        if method != "reconnect":
            failed = {failure.cid: failure for failure in failures
                      if isinstance(failure, ClientFailure)}
            for client, _ in instructions:
                self._health.record(client, server_round, failed.get(client.cid))
            if method == "fit":
                self._fit_timeouts = {cid for cid, f in failed.items()
                                      if isinstance(f, ClientTimeout)}
        _log_failures([f for f in failures if isinstance(f, BaseException)], server_round,
                      "disconnect" if method == "reconnect" else method)
        return results, failures

    def disconnect_all_clients(self, timeout: float | None) -> None:
        """Tell every connected client that the federation is over."""
        clients = list(self._client_manager.all().values())
        if not clients:
            return
        instructions = [(c, ReconnectIns(seconds=None)) for c in clients]
        try:
            self._call_clients(instructions, "reconnect", lambda client, res: res, timeout, 0)
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


def _add_failures(history: History, server_round: int, failures: Sequence[object]) -> None:
    """Record each failure: an exception names its client; a (client, reply) pair is a reply
    the client marked as failed (Flower's shape), with its status message."""
    for failure in failures:
        if isinstance(failure, tuple):
            client, res = failure
            history.add_failure(server_round, client.cid,
                                f"status {res.status.code.name}: {res.status.message}")
        else:
            history.add_failure(server_round, getattr(failure, "cid", "?"), getattr(
                failure, "reason", f"{type(failure).__name__}: {failure}"))


def _log_failures(failures: list[BaseException], server_round: int, what: str) -> None:
    """One line per kind of failure ("500 clients: ClientTimeout, no reply within 5 s"),
    not one per client; each client's failure at debug level."""
    for failure in failures:
        log.debug("round %d %s: %s", server_round, what, failure)
    if not failures:
        return
    kinds: dict[str, int] = {}
    for failure in failures:
        reason = getattr(failure, "reason", str(failure))
        kind = f"{type(failure).__name__}, {reason}"
        kinds[kind] = kinds.get(kind, 0) + 1
    level = logging.DEBUG if what == "disconnect" else logging.WARNING
    shown = sorted(kinds.items(), key=lambda item: -item[1])
    for kind, count in shown[:_KINDS_SHOWN]:
        log.log(level, "round %d %s: %d client%s failed: %s", server_round, what, count,
                "" if count == 1 else "s", kind)
    if len(shown) > _KINDS_SHOWN:
        rest = sum(count for _, count in shown[_KINDS_SHOWN:])
        log.log(level, "round %d %s: %d more failures of %d other kinds (see debug log)",
                server_round, what, rest, len(shown) - _KINDS_SHOWN)


def _decode_or_none(parameters: Parameters) -> NDArrays | None:
    if not parameters.tensors:
        return None
    return parameters_to_ndarrays(parameters)


def _fmt(value: Scalar) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
