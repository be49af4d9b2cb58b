"""Lifespan functions: setup before an app runs and cleanup after, around one ``yield``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from fedsilo.app._context import Context

__all__ = ["LifespanFn", "as_lifespan", "no_lifespan"]

LifespanFn = Callable[[Context], Iterator[None]]


def no_lifespan(context: Context) -> AbstractContextManager[None]:
    """The default: nothing before, nothing after."""
    return contextlib.nullcontext()


def as_lifespan(fn: LifespanFn) -> Callable[[Context], AbstractContextManager[None]]:
    """``fn(context)``, a generator that yields once, as a context manager; a function that
    yields never or twice is a ``RuntimeError``."""

    @contextlib.contextmanager
    def lifespan(context: Context) -> Iterator[None]:
        steps = fn(context)
        if not isinstance(steps, Iterator) or next(steps, StopIteration) is StopIteration:
            raise RuntimeError("lifespan function should yield at least once.")
        try:
            yield
        finally:
            if next(steps, StopIteration) is not StopIteration:
                raise RuntimeError("lifespan function should only yield once.")

    return lifespan
