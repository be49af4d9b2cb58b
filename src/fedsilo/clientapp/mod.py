"""Client mods: functions wrapped around a ClientApp's handlers.

``fixedclipping_mod`` and ``adaptiveclipping_mod`` are the client-side half of the
``DifferentialPrivacyClientSide*Clipping`` strategies: the server sends ``clipping_norm``
in the train config; the mod clips the update (trained minus received arrays) to that
norm before the reply leaves the node. The adaptive one also reports ``norm_bit``.
"""

from __future__ import annotations

import logging

import numpy as np

from fedsilo.app import Array, ArrayRecord, Context, Error, ErrorCode, Message, MessageType
from fedsilo.clientapp._client_app import ClientAppCallable
from fedsilo.common.clipping import KEY_CLIPPING_NORM, KEY_NORM_BIT, clip_update

log = logging.getLogger("fedsilo.client")

__all__ = ["adaptiveclipping_mod", "fixedclipping_mod"]


def fixedclipping_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Clip a train reply's update to the ``clipping_norm`` of the train config."""
    return _clipping("fixedclipping_mod", msg, ctxt, call_next, report_norm_bit=False)


def adaptiveclipping_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Like ``fixedclipping_mod``, and add ``norm_bit`` (1: clipped) to the reply's metrics."""
    return _clipping("adaptiveclipping_mod", msg, ctxt, call_next, report_norm_bit=True)


def _error(msg: Message, reason: str) -> Message:
    log.error(reason)
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                   reply_to=msg)


def _clipping(name: str, msg: Message, ctxt: Context, call_next: ClientAppCallable,
              report_norm_bit: bool) -> Message:
    if msg.metadata.message_type.partition(".")[0] != MessageType.TRAIN:
        return call_next(msg, ctxt)
    if len(msg.content.array_records) != 1 or len(msg.content.config_records) != 1:
        return _error(msg, f"{name} needs exactly one ArrayRecord and one ConfigRecord in "
                           "the message")
    config = next(iter(msg.content.config_records.values()))
    if KEY_CLIPPING_NORM not in config:
        return _error(msg, f"{name}: the config has no '{KEY_CLIPPING_NORM}'; use it with a "
                           "DifferentialPrivacyClientSide* strategy")
    clipping_norm = float(config[KEY_CLIPPING_NORM])  # type: ignore[arg-type]
    received = next(iter(msg.content.array_records.values()))
    reply = call_next(msg, ctxt)
    if reply.has_error():
        return reply
    if len(reply.content.array_records) != 1:
        return _error(msg, f"{name} needs exactly one ArrayRecord in the reply")
    key, trained = next(iter(reply.content.array_records.items()))
    if list(trained.keys()) != list(received.keys()):
        return _error(msg, f"{name}: the reply's arrays are not named as those received")
    old = [a.numpy() for a in received.values()]
    new = [a.numpy() for a in trained.values()]
    clipped, was_clipped = clip_update([n - o for n, o in zip(new, old, strict=True)],
                                       clipping_norm)
    reply.content[key] = ArrayRecord({
        name_: Array(np.asarray(o + c).astype(n.dtype, copy=False))
        for name_, o, c, n in zip(trained.keys(), old, clipped, new, strict=True)})
    if report_norm_bit:
        if len(reply.content.metric_records) != 1:
            return _error(msg, f"{name} needs exactly one MetricRecord in the reply")
        next(iter(reply.content.metric_records.values()))[KEY_NORM_BIT] = int(was_clipped)
    return reply
