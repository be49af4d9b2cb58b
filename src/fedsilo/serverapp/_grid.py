"""``Grid``: how a ServerApp reaches the nodes, built on the round loop's client proxies.

Each node is a ``ClientProxy`` of the server's client manager (a gRPC stream, a simulated
client, an in-process client); its node id is a stable small integer given to its client
id on first sight. A train or evaluate message travels as the legacy instruction the
proxies carry (see :mod:`fedsilo.app._legacy`): instructions that share one content
object are encoded once, replies are checked as the round loop checks them (tensors that
decode, no NaN or Inf, a sane example count), and a node that fails, times out or
cannot be sent the message gets a reply that carries an ``Error``.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from fedsilo.app import Error, ErrorCode, Message, MessageType, RecordDict
from fedsilo.app._envelope import ENVELOPE_KEY, close_envelope, open_envelope
from fedsilo.app._legacy import (
    LegacyIncompatible,
    arrays_to_parameters,
    evaluateres_to_content,
    fitres_to_content,
    split_instruction,
)
from fedsilo.common.exceptions import ClientReportedError, InvalidUpdate, ProtocolError
from fedsilo.common.typing import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetPropertiesIns,
    NDArrays,
    Parameters,
)
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.server import Server
from fedsilo.server.validation import MAX_NUM_EXAMPLES, check_evaluate_res, check_fit_res

if TYPE_CHECKING:
    from fedsilo.serverapp.strategy import Result, Strategy

__all__ = ["Grid", "ProxyGrid", "ReplyFold", "wait_for_nodes"]

ReplyFold = Callable[[Message, NDArrays | None], None]
"""Called with each reply as it arrives, and the reply's checked arrays (train replies)."""


class Grid(ABC):
    """What a ServerApp's ``main`` uses to talk to the nodes (Flower's ``Grid``)."""

    @abstractmethod
    def get_node_ids(self) -> Iterable[int]:
        """The ids of the nodes connected now."""

    @abstractmethod
    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Send messages without waiting; return their ids."""

    @abstractmethod
    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies that have arrived for these message ids (each is returned once)."""

    @abstractmethod
    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Send messages and wait up to ``timeout`` seconds for every reply."""

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        """The older spelling of ``Message(content, dst_node_id, message_type, ...)``."""
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def on_round_end(self, server_round: int, result: Result,  # noqa: B027
                     strategy: Strategy) -> None:
        """Told by fedsilo's strategies after each round of ``start()`` (round 0: after the
        initial evaluation) with the Result so far; nothing happens by default.

        A Grid that serves a deployment keeps it: ``fedsilo federate`` records each round's
        figures for its live view and ``fedsilo status``, checkpoints the Result with the
        strategy's ``state_dict()``, and saves the last ``arrays`` as the run's final
        arrays. Strategies that run their own loop need not call it.
        """

    def resume(self, strategy: Strategy) -> tuple[int, Result] | None:
        """Where ``strategy.start()`` goes on from: None (the default) to start from round 1;
        a Grid that continues a stopped run loads the strategy's saved state into
        ``strategy`` and returns the last round done and the Result it had reached."""
        return None


class ProxyGrid(Grid):
    """A Grid over the client proxies of ``client_manager``.

    Parameters
    ----------
    client_manager:
        Where the nodes are (the server's or the simulation's client manager).
    run_id:
        The run the messages belong to.
    max_num_examples:
        The largest ``num-examples`` a reply may claim.
    """

    def __init__(self, client_manager: ClientManager, *, run_id: int = 0,
                 max_num_examples: int = MAX_NUM_EXAMPLES) -> None:
        self.client_manager = client_manager
        self.run_id = run_id
        self.max_num_examples = max_num_examples
        self._server = Server(client_manager=client_manager, max_num_examples=max_num_examples)
        self._node_ids: dict[str, int] = {}
        self._cids: dict[int, str] = {}
        self._next_id = itertools.count(1)
        self._lock = threading.Lock()
        self._pulled: dict[str, Message] = {}  # replies to pushed messages, by message id
        self._reads_envelopes: dict[str, bool] = {}  # by client id, once asked
        self._push_pool: concurrent.futures.ThreadPoolExecutor | None = None

    # Nodes -------------------------------------------------------------------------------

    def _node_id(self, cid: str) -> int:
        with self._lock:
            node_id = self._node_ids.get(cid)
            if node_id is None:
                node_id = next(self._next_id)
                self._node_ids[cid] = node_id
                self._cids[node_id] = cid
            return node_id

    def get_node_ids(self) -> list[int]:
        return [self._node_id(cid) for cid in sorted(self.client_manager.all(), key=_cid_order)]

    def adopt_server(self, server: Server) -> None:  # noqa: B027 - a hook, empty by default
        """A ``server_fn`` app's legacy Server on this Grid, before it runs; nothing happens by
        default. A deployment's Grid gives it round checkpoints (from which it resumes) and
        its end-of-round report, and keeps its final parameters."""


    # Sending -----------------------------------------------------------------------------

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> list[Message]:
        replies: list[Message] = []
        self.send_and_fold(messages, lambda reply, _arrays: replies.append(reply),
                           timeout=timeout, keep_arrays=True)
        return replies

    def send_and_fold(self, messages: Iterable[Message], fold: ReplyFold, *,
                      timeout: float | None = None, keep_arrays: bool = False) -> None:
        """Send ``messages`` and call ``fold`` with each reply, in this thread, as it comes.

        A train reply reaches ``fold`` with its decoded, checked arrays; unless
        ``keep_arrays``, the reply's ArrayRecord is emptied once ``fold`` returns, so the
        round holds one model at a time, not one per node.
        """
        messages = list(messages)
        # A node gets one instruction per call of the round loop: messages for a node that
        # already has one in a batch go into the next batch; fits and evaluations apart.
        batches: list[tuple[str, dict[str, tuple[ClientProxy, FitIns | EvaluateIns,
                                                  Message]]]] = []
        encoded: dict[int, FitIns | EvaluateIns] = {}
        proxies = self.client_manager.all()
        if any(m.metadata.dst_node_id not in self._cids for m in messages):
            self.get_node_ids()  # nodes joined since the ids were last listed
        for message in messages:
            self._stamp(message)
            cid = self._cids.get(message.metadata.dst_node_id)
            proxy = None if cid is None else proxies.get(cid)
            if proxy is None:
                fold(_error_reply(message, ErrorCode.MESSAGE_UNAVAILABLE,
                                  f"node {message.metadata.dst_node_id} is not connected"),
                     None)
                continue
            try:
                ins = encoded.get(id(message.content))
                if ins is None:
                    ins = _to_instruction(message)
                    encoded[id(message.content)] = ins
            except LegacyIncompatible as exc:
                fold(_error_reply(message, ErrorCode.MESSAGE_UNAVAILABLE, str(exc)), None)
                continue
            method = "fit" if isinstance(ins, FitIns) else "evaluate"
            batch = next((b for m, b in batches if m == method and proxy.cid not in b), None)
            if batch is None:
                batch = {}
                batches.append((method, batch))
            batch[proxy.cid] = (proxy, ins, message)
        self._drop_for_legacy_peers(batches, fold, timeout)
        for method, batch in batches:
            if batch:
                self._send_batch(method, batch, fold, timeout, keep_arrays)

    def _drop_for_legacy_peers(
            self, batches: list[tuple[str, dict[str, tuple[ClientProxy, FitIns | EvaluateIns,
                                                          Message]]]],
            fold: ReplyFold, timeout: float | None) -> None:
        """A message in an envelope goes only to nodes that read envelopes (fedsilo nodes
        say so in their properties, asked once per node); any other node gets an Error reply
        that says why, instead of a legacy instruction it would misread."""
        enveloped = {cid: proxy for _, batch in batches
                     for cid, (proxy, ins, _) in batch.items() if ENVELOPE_KEY in ins.config}
        unknown = [(proxy, GetPropertiesIns({})) for cid, proxy in enveloped.items()
                   if cid not in self._reads_envelopes]
        if unknown:
            results, failures = self._server._call_clients(
                unknown, "get_properties", lambda proxy, res: res, timeout, 0)
            for proxy, res in results:
                self._reads_envelopes[proxy.cid] = (
                    res.status.code == Code.OK and res.properties.get(ENVELOPE_KEY) is True)
        for _, batch in batches:
            for cid in [c for c in batch if c in enveloped]:
                if self._reads_envelopes.get(cid):
                    continue
                message = batch.pop(cid)[2]
                known = cid in self._reads_envelopes
                fold(_error_reply(message, ErrorCode.MESSAGE_UNAVAILABLE,
                                  f"node {message.metadata.dst_node_id} is a legacy client: "
                                  f"this {message.metadata.message_type!r} message does not "
                                  "fit a plain FitIns/EvaluateIns (one ArrayRecord, one "
                                  "ConfigRecord of scalars)" if known else
                                  f"node {message.metadata.dst_node_id} did not say which "
                                  "messages it reads"), None)

    def _send_batch(self, method: str,
                    batch: dict[str, tuple[ClientProxy, FitIns | EvaluateIns, Message]],
                    fold: ReplyFold, timeout: float | None, keep_arrays: bool) -> None:
        def process(proxy: ClientProxy, res: FitRes | EvaluateRes) -> None:
            message = batch[proxy.cid][2]
            try:
                reply, arrays = self._reply(proxy, message, res)
                fold(reply, arrays)
                if not keep_arrays and arrays is not None:
                    for record in reply.content.array_records.values():
                        record.clear()
            finally:
                proxy.release_reply()

        group = [(proxy, ins) for proxy, ins, _ in batch.values()]
        server_round = _round_of([message for _, _, message in batch.values()])
        _, failures = self._server._call_clients(group, method, process, timeout, server_round)
        for failure in failures:
            cid = getattr(failure, "cid", None)
            if cid in batch:
                fold(_error_reply(batch[cid][2], ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                  str(failure)), None)

    def _stamp(self, message: Message) -> None:
        metadata = message.metadata
        if not metadata.message_id:
            metadata.message_id = uuid.uuid4().hex
        metadata.run_id = self.run_id

    def _reply(self, proxy: ClientProxy, message: Message,
               res: FitRes | EvaluateRes) -> tuple[Message, NDArrays | None]:
        if res.status.code != Code.OK:
            raise ClientReportedError(proxy.cid, res.status.message or res.status.code.name)
        arrays: NDArrays | None = None
        if isinstance(res, FitRes):
            arrays = check_fit_res(proxy.cid, res, None, self.max_num_examples)
        else:
            check_evaluate_res(proxy.cid, res, self.max_num_examples)
        if ENVELOPE_KEY in res.metrics:
            parameters = res.parameters if isinstance(res, FitRes) else Parameters([], "")
            try:
                content, _ = open_envelope(parameters, res.metrics[ENVELOPE_KEY])
            except ProtocolError as exc:
                raise InvalidUpdate(proxy.cid, str(exc)) from exc
        elif isinstance(res, FitRes):
            keys = list(message.content.array_records.get(_first_key(message), {}).keys())
            content = fitres_to_content(res, keys, arrays)
        else:
            content = evaluateres_to_content(res)
        reply = Message(content, reply_to=message)
        reply.metadata.message_id = uuid.uuid4().hex
        return reply, arrays

    # Push and pull -----------------------------------------------------------------------

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Send in the background (one push after another); replies wait for ``pull``."""
        messages = list(messages)
        for message in messages:
            self._stamp(message)
        with self._lock:
            if self._push_pool is None:
                self._push_pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="fedsilo-grid-push")
            pool = self._push_pool

        def deliver(reply: Message, _: NDArrays | None) -> None:
            with self._lock:
                self._pulled[reply.metadata.reply_to_message_id] = reply

        if messages:
            timeout = min(m.metadata.ttl for m in messages)
            pool.submit(self.send_and_fold, messages, deliver, timeout=timeout,
                        keep_arrays=True)
        return [m.metadata.message_id for m in messages]

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        with self._lock:
            return [self._pulled.pop(i) for i in message_ids if i in self._pulled]

    def close(self) -> None:
        """Stop the threads that carry pushed messages."""
        if self._push_pool is not None:
            self._push_pool.shutdown(wait=False, cancel_futures=True)
            self._push_pool = None
        self._server._stop_workers()


def _cid_order(cid: str) -> tuple[int, int | str]:
    return (0, int(cid)) if cid.isdigit() else (1, cid)


def _first_key(message: Message) -> str:
    return next(iter(message.content.array_records), "")


def _round_of(messages: list[Message]) -> int:
    group = messages[0].metadata.group_id if messages else ""
    return int(group) if group.isdigit() else 0


def _to_instruction(message: Message) -> FitIns | EvaluateIns:
    """The legacy instruction that carries ``message``: plain when its content fits, else
    in an envelope (train messages as FitIns, any other type as EvaluateIns)."""
    message_type = message.metadata.message_type
    if not message.has_content():
        raise LegacyIncompatible("the message carries no content")
    trains = message_type.partition(".")[0] == MessageType.TRAIN
    try:
        if message_type not in (MessageType.TRAIN, MessageType.EVALUATE):
            raise LegacyIncompatible(f"{message_type!r} is not a legacy instruction")
        arrays, config = split_instruction(message.content, message_type)
        parameters = arrays_to_parameters(arrays)
    except LegacyIncompatible:
        parameters, envelope = close_envelope(message.content, message_type)
        config = {ENVELOPE_KEY: envelope}
    if message.metadata.group_id and "server-round" not in config:
        config = {**config, "server-round": message.metadata.group_id}
    return FitIns(parameters, config) if trains else EvaluateIns(parameters, config)


def _error_reply(message: Message, code: int, reason: str) -> Message:
    reply = Message(Error(code=code, reason=reason), reply_to=message)
    reply.metadata.message_id = uuid.uuid4().hex
    return reply


def wait_for_nodes(grid: Grid, count: int, timeout: float | None = None) -> list[int]:
    """Wait until ``count`` nodes are connected; return their ids."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < count:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of {count} nodes connected within {timeout} s")
        time.sleep(0.05)
    return nodes
