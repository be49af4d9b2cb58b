"""A ClientApp behind fedsilo's transports: it answers legacy instructions.

gRPC streams, simulation workers and in-process proxies carry FitIns and
EvaluateIns (see :mod:`fedsilo.app._legacy`); :class:`ClientAppClient` turns each into a
train or evaluate Message for the app, with the node's Context, and the app's reply back.
The Context (and its ``state``) lives as long as this object: one per node; in a
simulation, ``get_state``/``set_state`` carry ``context.state`` between rounds.
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from fedsilo.app import Context, Message, MessageType, Metadata, RecordDict
from fedsilo.app._envelope import ENVELOPE_KEY, close_envelope, open_envelope
from fedsilo.app._legacy import (
    NUM_EXAMPLES_KEY,
    LegacyIncompatible,
    evaluate_reply_to_res,
    instruction_to_content,
    train_reply_to_res,
)
from fedsilo.app._message import DEFAULT_TTL, SERVER_NODE_ID
from fedsilo.client.client import Client
from fedsilo.clientapp._client_app import ClientApp
from fedsilo.common.typing import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetPropertiesIns,
    GetPropertiesRes,
    NDArray,
    Parameters,
    Status,
)

__all__ = ["ClientAppClient", "node_context"]


def node_context(node_id: int, node_config: dict[str, bool | float | int | str],
                 run_config: dict[str, bool | float | int | str] | None = None,
                 run_id: int = 0) -> Context:
    """A fresh Context for a node."""
    return Context(run_id=run_id, node_id=node_id, node_config=dict(node_config),
                   state=RecordDict(), run_config=dict(run_config or {}))


class ClientAppClient(Client):
    """Presents a ClientApp, with its node's Context, as a legacy Client.

    Parameters
    ----------
    app:
        The ClientApp.
    context:
        The node's Context, kept across messages.
    """

    def __init__(self, app: ClientApp, context: Context) -> None:
        self.app = app
        self.context = context

    def _instruction(self, ins: FitIns | EvaluateIns, message_type: str) -> Message:
        if ENVELOPE_KEY in ins.config:
            content, message_type = open_envelope(ins.parameters, ins.config[ENVELOPE_KEY])
        else:
            content = instruction_to_content(ins)
        metadata = Metadata(run_id=self.context.run_id, message_id=uuid.uuid4().hex,
                            src_node_id=SERVER_NODE_ID, dst_node_id=self.context.node_id,
                            reply_to_message_id="",
                            group_id=str(ins.config.get("server-round", "")),
                            created_at=time.time(), ttl=DEFAULT_TTL, message_type=message_type)
        return Message(content, metadata=metadata)

    def _run(self, message: Message) -> RecordDict:
        reply = self.app(message, self.context)
        if not isinstance(reply, Message):
            raise TypeError(f"the ClientApp's {message.metadata.message_type} function must "
                            f"return a Message, got {type(reply).__name__}; return "
                            "Message(content=RecordDict(...), reply_to=msg)")
        if reply.has_error():
            raise RuntimeError(f"the ClientApp replied with error {reply.error.code}: "
                               f"{reply.error.reason}")
        return reply.content

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        """Tells the server that this node reads any RecordDict (in an envelope)."""
        return GetPropertiesRes(Status(Code.OK, "Success"), {ENVELOPE_KEY: True})

    def get_state(self) -> dict[str, NDArray]:
        """``context.state`` as arrays, so a simulation can keep it between the rounds this
        node is sampled in (the envelope's bytes, then each array's ``.npy`` bytes)."""
        parameters, envelope = close_envelope(self.context.state, "state")
        state = {"envelope": np.frombuffer(envelope, dtype=np.uint8)}
        for index, tensor in enumerate(parameters.tensors):
            state[f"t{index}"] = np.frombuffer(tensor, dtype=np.uint8)
        return state

    def set_state(self, state: dict[str, NDArray]) -> None:
        """Restore ``context.state`` from what ``get_state`` returned."""
        tensors = [state[f"t{i}"].tobytes() for i in range(len(state) - 1)]
        self.context.state, _ = open_envelope(Parameters(tensors, "numpy.ndarray"),
                                              state["envelope"].tobytes())

    def fit(self, ins: FitIns) -> FitRes:
        message = self._instruction(ins, MessageType.TRAIN)
        content = self._run(message)
        if ENVELOPE_KEY not in ins.config:
            try:
                return train_reply_to_res(content)
            except LegacyIncompatible:
                pass  # a reply the plain mapping cannot carry travels in an envelope
        parameters, envelope = close_envelope(content, message.metadata.message_type)
        return FitRes(Status(Code.OK, "Success"), parameters, _weight(content),
                      {ENVELOPE_KEY: envelope})

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        message = self._instruction(ins, MessageType.EVALUATE)
        content = self._run(message)
        if ENVELOPE_KEY not in ins.config:
            try:
                return evaluate_reply_to_res(content)
            except LegacyIncompatible:
                pass
        if content.array_records:
            raise LegacyIncompatible(
                f"the {message.metadata.message_type} reply holds arrays; only train replies "
                "carry arrays to the server")
        _, envelope = close_envelope(content, message.metadata.message_type)
        return EvaluateRes(Status(Code.OK, "Success"), 0.0, _weight(content),
                           {ENVELOPE_KEY: envelope})


def _weight(content: RecordDict) -> int:
    """The reply's ``num-examples`` where it has one plain number of them, else 0."""
    for record in content.metric_records.values():
        value = record.get(NUM_EXAMPLES_KEY)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return int(value)
    return 0
