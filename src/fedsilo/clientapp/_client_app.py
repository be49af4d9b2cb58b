"""``ClientApp``: the code a node runs for each message it receives.

Two forms, as in Flower: functions registered with ``@app.train()``,
``@app.evaluate()`` and ``@app.query()`` (each takes a Message and the Context and
returns the reply), or the older ``ClientApp(client_fn=...)`` whose ``client_fn(context)``
returns a legacy ``Client`` (``NumPyClient(...).to_client()``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from fedsilo.app import Context, Message, MessageType
from fedsilo.app._legacy import (
    arrays_to_parameters,
    evaluateres_to_content,
    fitres_to_content,
    split_instruction,
)
from fedsilo.app._lifespan import LifespanFn, as_lifespan, no_lifespan
from fedsilo.client.client import Client
from fedsilo.client.numpy_client import NumPyClient
from fedsilo.common.exceptions import ClientReturnError
from fedsilo.common.typing import Code, EvaluateIns, FitIns

__all__ = ["ClientApp", "ClientAppCallable", "Mod"]

ClientAppCallable = Callable[[Message, Context], Message]
Mod = Callable[[Message, Context, ClientAppCallable], Message]
ClientFn = Callable[[Context], Client | NumPyClient]

_CATEGORIES = (MessageType.TRAIN, MessageType.EVALUATE, MessageType.QUERY)
_DEFAULT_ACTION = "default"


def _wrap(handler: ClientAppCallable, mods: list[Mod]) -> ClientAppCallable:
    """``handler`` inside ``mods``: the first mod is the outermost."""
    for mod in reversed(mods):
        handler = _bind(mod, handler)
    return handler


def _bind(mod: Mod, call_next: ClientAppCallable) -> ClientAppCallable:
    def wrapped(message: Message, context: Context) -> Message:
        return mod(message, context, call_next)
    return wrapped


class ClientApp:
    """A node's app.

    Parameters
    ----------
    client_fn:
        The older form: ``client_fn(context)`` returns the ``Client`` that handles train
        and evaluate messages (as ``fit`` and ``evaluate``).
    mods:
        Functions ``mod(message, context, call_next)`` wrapped around every handler,
        first one outermost (for instance ``fixedclipping_mod``).
    """

    def __init__(self, client_fn: ClientFn | None = None, mods: list[Mod] | None = None) -> None:
        self._mods: list[Mod] = list(mods or [])
        self._handlers: dict[str, ClientAppCallable] = {}
        self._client_fn = client_fn
        self._call: ClientAppCallable | None = None
        self._lifespan: Callable[[Context], AbstractContextManager[None]] = no_lifespan
        if client_fn is not None:
            if len(inspect.signature(client_fn).parameters) != 1:
                raise TypeError("client_fn must take one argument, the Context: "
                                "def client_fn(context: Context) -> Client")
            self._call = _wrap(self._legacy_handler, self._mods)

    def __call__(self, message: Message, context: Context) -> Message:
        """Handle ``message`` and return the reply, inside the lifespan function."""
        with self._lifespan(context):
            return self._handle(message, context)

    def lifespan(self) -> Callable[[LifespanFn], LifespanFn]:
        """Register ``fn(context)``, a generator that yields once: its code before the
        ``yield`` runs before each message is handled, the code after it afterwards."""
        def decorator(fn: LifespanFn) -> LifespanFn:
            self._lifespan = as_lifespan(fn)
            return fn
        return decorator

    def _handle(self, message: Message, context: Context) -> Message:
        if self._call is not None:
            return self._call(message, context)
        message_type = message.metadata.message_type
        category, _, action = message_type.partition(".")
        action = action or _DEFAULT_ACTION
        if category not in _CATEGORIES or not action.isidentifier():
            raise ValueError(f"Invalid message type: {message_type}")
        handler = self._handlers.get(f"{category}.{action}")
        if handler is None:
            raise ValueError(f"No {category} function registered with name '{action}'")
        return handler(message, context)

    def handles(self, message_type: str) -> bool:
        """Whether a message of this type has a handler."""
        if self._call is not None:
            return message_type in (MessageType.TRAIN, MessageType.EVALUATE)
        category, _, action = message_type.partition(".")
        return f"{category}.{action or _DEFAULT_ACTION}" in self._handlers

    def train(self, action: str = _DEFAULT_ACTION,
              mods: list[Mod] | None = None) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Register the function that handles ``train`` (or ``train.<action>``) messages."""
        return self._register(MessageType.TRAIN, action, mods)

    def evaluate(self, action: str = _DEFAULT_ACTION,
                 mods: list[Mod] | None = None
                 ) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Register the function that handles ``evaluate`` messages."""
        return self._register(MessageType.EVALUATE, action, mods)

    def query(self, action: str = _DEFAULT_ACTION,
              mods: list[Mod] | None = None) -> Callable[[ClientAppCallable], ClientAppCallable]:
        """Register the function that handles ``query`` messages."""
        return self._register(MessageType.QUERY, action, mods)

    def _register(self, category: str, action: str,
                  mods: list[Mod] | None) -> Callable[[ClientAppCallable], ClientAppCallable]:
        if self._call is not None:
            raise ValueError(f"Use either `@app.{category}()` or `client_fn`, but not both.")

        def decorator(fn: ClientAppCallable) -> ClientAppCallable:
            if not action.isidentifier():
                raise ValueError(f"Cannot register {category} function with name '{action}'. "
                                 "The name must follow Python's function naming rules.")
            name = f"{category}.{action}"
            if name in self._handlers:
                raise ValueError(f"Cannot register {category} function with name '{action}'. "
                                 f"A {category} function with the name '{action}' is already "
                                 "registered.")
            self._handlers[name] = _wrap(fn, self._mods + list(mods or []))
            return fn

        return decorator

    def _legacy_handler(self, message: Message, context: Context) -> Message:
        """The older form: the Client from ``client_fn`` handles train and evaluate."""
        assert self._client_fn is not None
        client: Any = self._client_fn(context)
        if isinstance(client, NumPyClient):
            client = client.to_client()
        if not isinstance(client, Client):
            raise ClientReturnError(f"client_fn must return a Client, got "
                                    f"{type(client).__name__}; return "
                                    "MyNumPyClient(...).to_client()")
        message_type = message.metadata.message_type
        arrays, config = split_instruction(message.content, message_type)
        parameters = arrays_to_parameters(arrays)
        if message_type == MessageType.TRAIN:
            fit = client.fit(FitIns(parameters, config))
            _raise_unless_ok(fit.status.code, fit.status.message)
            content = fitres_to_content(fit, list(arrays.keys()))
        elif message_type == MessageType.EVALUATE:
            res = client.evaluate(EvaluateIns(parameters, config))
            _raise_unless_ok(res.status.code, res.status.message)
            content = evaluateres_to_content(res)
        else:
            raise ValueError(f"Invalid message type: {message_type}; a ClientApp made from "
                             "client_fn handles train and evaluate")
        return Message(content, reply_to=message)


def _raise_unless_ok(code: Code, message: str) -> None:
    if code != Code.OK:
        raise RuntimeError(message or code.name)
