"""``Message`` and what it carries beside its content: ``Metadata``, ``Error``, ``MessageType``.

A message is built two ways, as in Flower: ``Message(content, dst_node_id, message_type)``
for an instruction, or ``Message(content_or_error, reply_to=instruction)`` for its reply,
which takes its addresses, group and type from the instruction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fedsilo.app._recorddict import RecordDict

log = logging.getLogger("fedsilo.app")

__all__ = ["DEFAULT_TTL", "Error", "Message", "MessageInitializationError", "MessageType",
           "Metadata", "SERVER_NODE_ID"]

DEFAULT_TTL = 43200.0
"""Seconds a message lives when no ``ttl`` is given (12 hours)."""

SERVER_NODE_ID = 0
"""The node id of the ServerApp's side: instructions come from it, replies go to it."""

_USAGE = ("Invalid arguments for Message. Expected one of the documented signatures: "
          "Message(content: RecordDict, dst_node_id: int, message_type: str, *, "
          "[ttl: float, group_id: str]) or Message(content: RecordDict | error: Error, *, "
          "reply_to: Message, [ttl: float]).")


class MessageInitializationError(TypeError):
    """``Message`` was called with arguments that match none of its forms."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or _USAGE)


class MessageType:
    """The message types a ClientApp handles (``"train"``, ``"evaluate"``, ``"query"``).

    A ClientApp may also handle ``"train.<name>"`` and the like, registered with
    ``@app.train("<name>")``.
    """

    TRAIN = "train"
    EVALUATE = "evaluate"
    QUERY = "query"

    def __new__(cls) -> MessageType:
        raise TypeError(f"{cls.__name__} cannot be instantiated.")


@dataclass
class Error:
    """What went wrong while handling a message: a ``code`` and a ``reason``.

    Parameters
    ----------
    code:
        An identifier of the kind of error (see ``ErrorCode``).
    reason:
        Why, for a person (an exception's text, say).
    """

    code: int
    reason: str | None = None


class ErrorCode:
    """Codes of the errors fedsilo puts in a reply (Flower's numbers)."""

    UNKNOWN = 0
    LOAD_CLIENT_APP_EXCEPTION = 1
    CLIENT_APP_RAISED_EXCEPTION = 2
    MESSAGE_UNAVAILABLE = 3
    REPLY_MESSAGE_UNAVAILABLE = 4

    def __new__(cls) -> ErrorCode:
        raise TypeError(f"{cls.__name__} cannot be instantiated.")


@dataclass
class Metadata:
    """Where a message comes from and goes to, what it answers, and when it expires.

    Parameters
    ----------
    run_id:
        The run the message belongs to.
    message_id:
        Set when the message is sent ("" before).
    src_node_id, dst_node_id:
        The sending and the receiving node.
    reply_to_message_id:
        The id of the instruction this message answers ("" for an instruction).
    group_id:
        Groups messages, e.g. by round.
    created_at:
        Unix time of creation.
    ttl:
        Seconds the message lives.
    message_type:
        What the receiver is asked to do (see ``MessageType``).
    """

    run_id: int
    message_id: str
    src_node_id: int
    dst_node_id: int
    reply_to_message_id: str
    group_id: str
    created_at: float
    ttl: float
    message_type: str
    delivered_at: str = field(default="")


class Message:
    """An instruction from the ServerApp to a node, or a node's reply.

    Parameters
    ----------
    content:
        The records the message carries (a reply carries content or an error).
    error:
        What went wrong, in a reply that carries no content.
    dst_node_id:
        The node an instruction is for.
    message_type:
        What the node is asked to do (``MessageType.TRAIN``, ...).
    ttl:
        Seconds the message lives (default 12 hours; a reply lives no longer than the
        instruction it answers).
    group_id:
        Groups instructions, e.g. the round as a string.
    reply_to:
        The instruction a reply answers.
    """

    def __init__(self, *args: Any, dst_node_id: int | None = None,
                 message_type: str | None = None, content: RecordDict | None = None,
                 error: Error | None = None, ttl: float | None = None,
                 group_id: str | None = None, reply_to: Message | None = None,
                 metadata: Metadata | None = None) -> None:
        if len(args) > 3:
            raise MessageInitializationError()
        if len(args) > 1:
            if dst_node_id is not None:
                raise MessageInitializationError()
            dst_node_id = args[1]
        if len(args) > 2:
            if message_type is not None:
                raise MessageInitializationError()
            message_type = args[2]
        first = args[0] if args else None
        if sum(x is not None for x in (first, content, error)) != 1:
            raise MessageInitializationError()
        if isinstance(first, RecordDict):
            content = first
        elif isinstance(first, Error):
            error = first
        elif first is not None:
            raise MessageInitializationError()
        _check_types(dst_node_id, message_type, content, error, ttl, group_id, reply_to,
                     metadata)
        if metadata is not None:
            if any(x is not None for x in (dst_node_id, message_type, ttl, group_id, reply_to)):
                raise MessageInitializationError(
                    "Invalid arguments for Message. Expected only `metadata` to be set when "
                    "creating a message with provided metadata.")
        elif reply_to is None:
            if not (isinstance(content, RecordDict) and isinstance(dst_node_id, int)
                    and isinstance(message_type, str)):
                raise MessageInitializationError()
            metadata = Metadata(run_id=0, message_id="", src_node_id=SERVER_NODE_ID,
                                dst_node_id=dst_node_id, reply_to_message_id="",
                                group_id=group_id or "", created_at=time.time(),
                                ttl=float(ttl or DEFAULT_TTL), message_type=message_type)
        else:
            if any(x is not None for x in (dst_node_id, message_type, group_id)):
                raise MessageInitializationError()
            now = time.time()
            asked = reply_to.metadata
            metadata = Metadata(run_id=asked.run_id, message_id="",
                                src_node_id=asked.dst_node_id, dst_node_id=asked.src_node_id,
                                reply_to_message_id=asked.message_id, group_id=asked.group_id,
                                created_at=now, ttl=_reply_ttl(now, ttl, asked),
                                message_type=asked.message_type)
        self._metadata = metadata
        self._content = content
        self._error = error

    @property
    def metadata(self) -> Metadata:
        """Addresses, ids, type and lifetime of the message."""
        return self._metadata

    @property
    def content(self) -> RecordDict:
        """The records carried; raises ValueError for a message that carries an error."""
        if self._content is None:
            raise ValueError("Message content is None. Use <message>.has_content() to check "
                             "if a message has content.")
        return self._content

    @content.setter
    def content(self, value: RecordDict) -> None:
        if self._error is not None:
            raise ValueError("A message with an error set cannot have content.")
        self._content = value

    @property
    def error(self) -> Error:
        """The error carried; raises ValueError for a message that carries content."""
        if self._error is None:
            raise ValueError("Message error is None. Use <message>.has_error() to check first "
                             "if a message carries an error.")
        return self._error

    @error.setter
    def error(self, value: Error) -> None:
        if self._content is not None:
            raise ValueError("A message with content set cannot carry an error.")
        self._error = value

    def has_content(self) -> bool:
        """Whether the message carries content."""
        return self._content is not None

    def has_error(self) -> bool:
        """Whether the message carries an error."""
        return self._error is not None

    def create_reply(self, content: RecordDict, ttl: float | None = None) -> Message:
        """The older spelling of ``Message(content, reply_to=self, ttl=ttl)``."""
        return Message(content, reply_to=self, ttl=ttl)

    def create_error_reply(self, error: Error, ttl: float | None = None) -> Message:
        """The older spelling of ``Message(error, reply_to=self, ttl=ttl)``."""
        return Message(error, reply_to=self, ttl=ttl)

    def __repr__(self) -> str:
        body = (f"content={self._content!r}" if self._content is not None
                else f"error={self._error!r}")
        return f"Message(metadata={self._metadata!r}, {body})"


def _check_types(dst_node_id: object, message_type: object, content: object, error: object,
                 ttl: object, group_id: object, reply_to: object, metadata: object) -> None:
    checks = ((dst_node_id, int), (message_type, str), (content, RecordDict), (error, Error),
              (ttl, int | float), (group_id, str), (reply_to, Message), (metadata, Metadata))
    if any(value is not None and not isinstance(value, kind) for value, kind in checks):
        raise MessageInitializationError()


def _reply_ttl(now: float, ttl: float | None, asked: Metadata) -> float:
    """A reply lives at most as long as what is left of the instruction's life."""
    allowed = asked.created_at + asked.ttl - now
    if ttl is not None and ttl - allowed > 1.0:
        log.warning("the reply's ttl of %.2f s exceeds the %.2f s the instruction has left; "
                    "it is cut to that", ttl, allowed)
        return allowed
    return float(ttl) if ttl is not None else allowed
