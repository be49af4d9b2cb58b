"""Client mods: functions wrapped around a ClientApp's handlers.

``fixedclipping_mod`` and ``adaptiveclipping_mod`` are the client-side half of the
``DifferentialPrivacyClientSide*Clipping`` strategies: the server sends ``clipping_norm``
in the train config; the mod clips the update (trained minus received arrays) to that
norm before the reply leaves the node. The adaptive one also reports ``norm_bit``.

``LocalDpMod`` is local differential privacy on its own: the node clips its update to a
norm it sets itself and adds Gaussian noise before the reply leaves it. ``message_size_mod``
and ``arrays_size_mod`` log what a message weighs, in and out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from fedsilo.app import Array, ArrayRecord, Context, Error, ErrorCode, Message, MessageType
from fedsilo.clientapp._client_app import ClientAppCallable
from fedsilo.common.clipping import KEY_CLIPPING_NORM, KEY_NORM_BIT, clip_update

log = logging.getLogger("fedsilo.client")

__all__ = ["LocalDpMod", "adaptiveclipping_mod", "arrays_size_mod", "fixedclipping_mod",
           "message_size_mod"]


def fixedclipping_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Clip a train reply's update to the ``clipping_norm`` of the train config."""
    return _clipping("fixedclipping_mod", msg, ctxt, call_next, report_norm_bit=False)


def adaptiveclipping_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Like ``fixedclipping_mod``, and add ``norm_bit`` (1: clipped) to the reply's metrics."""
    return _clipping("adaptiveclipping_mod", msg, ctxt, call_next, report_norm_bit=True)


class LocalDpMod:
    """Local differential privacy for train replies: the update (trained minus received
    arrays) is clipped to ``clipping_norm``, then every coordinate gets Gaussian noise of
    standard deviation ``sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon`` (the Gaussian
    mechanism for an (epsilon, delta) guarantee), before the reply leaves the node.

    Parameters
    ----------
    clipping_norm:
        The norm the update is clipped to (positive).
    sensitivity:
        The sensitivity the noise is calibrated to (non-negative; 0 adds no noise).
    epsilon, delta:
        The privacy budget: epsilon positive, delta in (0, 1).
    seed:
        Seeds the noise (fedsilo's addition, for repeatable runs); None draws it afresh.
    """

    def __init__(self, clipping_norm: float, sensitivity: float, epsilon: float, delta: float,
                 *, seed: int | None = None) -> None:
        if clipping_norm <= 0:
            raise ValueError("The clipping norm should be a positive value.")
        if sensitivity < 0:
            raise ValueError("The sensitivity should be a non-negative value.")
        if epsilon <= 0:
            raise ValueError("Epsilon should be a positive value (0 would need infinite "
                             "noise).")
        if not 0 < delta < 1:
            raise ValueError("Delta should be in (0, 1).")
        self.clipping_norm = clipping_norm
        self.sensitivity = sensitivity
        self.epsilon = epsilon
        self.delta = delta
        self.rng = np.random.default_rng(seed)

    @property
    def stddev(self) -> float:
        """The noise's standard deviation per coordinate."""
        return float(self.sensitivity * np.sqrt(2 * np.log(1.25 / self.delta)) / self.epsilon)

    def __call__(self, msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type.partition(".")[0] != MessageType.TRAIN:
            return call_next(msg, ctxt)
        if len(msg.content.array_records) != 1:
            return _error(msg, "LocalDpMod needs exactly one ArrayRecord in the message")
        received = next(iter(msg.content.array_records.values()))
        reply = call_next(msg, ctxt)
        if reply.has_error():
            return reply
        stddev = self.stddev
        clipped = _clip_reply("LocalDpMod", msg, reply, received, self.clipping_norm,
                              noise=lambda shape: self.rng.normal(0.0, stddev, shape))
        if isinstance(clipped, Message):
            return clipped
        log.info("LocalDpMod: update clipped to norm %.4f, noise with stddev %.4f added",
                 self.clipping_norm, stddev)
        return reply


def message_size_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Log the size in bytes of the message received and of the reply sent."""
    log.info("Incoming message size: %d bytes", msg.content.count_bytes())
    reply = call_next(msg, ctxt)
    if not reply.has_error():
        log.info("Outgoing message size: %d bytes", reply.content.count_bytes())
    return reply


def arrays_size_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Log, for each ArrayRecord of the message received and of the reply sent, how many
    array elements and bytes it holds, and the total bytes."""
    _log_arrays("received", msg)
    reply = call_next(msg, ctxt)
    if not reply.has_error():
        _log_arrays("sent", reply)
    return reply


def _log_arrays(direction: str, msg: Message) -> None:
    stats = {name: {"elements": sum(int(np.prod(a.shape)) for a in record.values()),
                    "bytes": record.count_bytes()}
             for name, record in msg.content.array_records.items()}
    if stats:
        log.info("ArrayRecords %s: %s", direction, stats)
    log.info("Total array bytes %s: %d", direction, sum(s["bytes"] for s in stats.values()))


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
    was_clipped = _clip_reply(name, msg, reply, received, clipping_norm)
    if isinstance(was_clipped, Message):
        return was_clipped
    if report_norm_bit:
        if len(reply.content.metric_records) != 1:
            return _error(msg, f"{name} needs exactly one MetricRecord in the reply")
        next(iter(reply.content.metric_records.values()))[KEY_NORM_BIT] = int(was_clipped)
    return reply


def _clip_reply(name: str, msg: Message, reply: Message, received: ArrayRecord,
                clipping_norm: float,
                noise: Callable[[tuple[int, ...]], np.ndarray] | None = None) -> bool | Message:
    """Clip the update in ``reply`` (its one ArrayRecord minus ``received``) to
    ``clipping_norm`` in place, adding ``noise(shape)`` to each array where given; return
    whether the update was clipped, or the error reply when the reply cannot be clipped."""
    if len(reply.content.array_records) != 1:
        return _error(msg, f"{name} needs exactly one ArrayRecord in the reply")
    key, trained = next(iter(reply.content.array_records.items()))
    if list(trained.keys()) != list(received.keys()):
        return _error(msg, f"{name}: the reply's arrays are not named as those received")
    old = [a.numpy() for a in received.values()]
    new = [a.numpy() for a in trained.values()]
    clipped, was_clipped = clip_update([n - o for n, o in zip(new, old, strict=True)],
                                       clipping_norm)
    sent = {}
    for array_name, o, c, n in zip(trained.keys(), old, clipped, new, strict=True):
        value = o + c if noise is None else o + c + noise(n.shape)
        sent[array_name] = Array(np.asarray(value).astype(n.dtype, copy=False))
    reply.content[key] = ArrayRecord(sent)
    return bool(was_clipped)
