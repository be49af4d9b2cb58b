"""fedsilo's logger, set up as Flower sets up its own.

Everything fedsilo logs goes to the ``"fedsilo"`` logger (and its children, such as
``"fedsilo.server"``). On import it gets one console handler on stderr at INFO, so a server
and its clients report their progress (one line per round and per phase) without any
setup, as Flower's do. To hear less, or more::

    import logging
    from fedsilo.common.logger import update_console_handler
    update_console_handler(level=logging.WARNING)      # the console handler only
    logging.getLogger("fedsilo").setLevel(logging.WARNING)  # or the whole logger

Records also propagate to the root logger, as Flower's do; once an application gives the
root logger handlers of its own (``logging.basicConfig``), the console handler stays quiet,
so no line is printed twice. :func:`configure` adds a file (and, as in Flower, an HTTP log server).
"""

from __future__ import annotations

import logging
import logging.handlers

__all__ = [
    "LOGGER_NAME",
    "configure",
    "console_handler",
    "log",
    "logger",
    "update_console_handler",
    "warn_deprecated_feature",
]

LOGGER_NAME = "fedsilo"

logger = logging.getLogger(LOGGER_NAME)
logger.setLevel(logging.INFO)

class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, unless the application gave the root logger handlers of its own: records
    propagate there, and printing them here too would show every line twice."""

    def emit(self, record: logging.LogRecord) -> None:
        if logger.propagate and logging.getLogger().handlers:
            return
        super().emit(record)


console_handler = _ConsoleHandler()
console_handler.setLevel(logging.INFO)
console_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
logger.addHandler(console_handler)

log = logger.log
"""``log(level, msg, *args)``: Flower's shorthand for logging to the fedsilo logger."""


def update_console_handler(
    level: int | str | None = None, timestamps: bool = False, colored: bool = False
) -> None:
    """Change what the console handler prints.

    Parameters
    ----------
    level
        The lowest level printed (the logger's level follows it, so lower levels are
        neither printed nor built). None keeps the level.
    timestamps
        Start each line with the time.
    colored
        Accepted for Flower's signature; fedsilo's console lines are plain text.
    """
    del colored
    if level is not None:
        console_handler.setLevel(level)
        logger.setLevel(min(console_handler.level, _lowest_other_handler_level()))
    prefix = "%(asctime)s " if timestamps else ""
    console_handler.setFormatter(
        logging.Formatter(prefix + "%(levelname)s %(name)s: %(message)s"))


def configure(identifier: str, filename: str | None = None, host: str | None = None) -> None:
    """Also log to ``filename`` (every level, DEBUG up) and/or an HTTP log server.

    Each line carries ``identifier``, as in Flower. ``host`` is ``"host:port"`` of a server
    that takes the records as HTTP POSTs on ``/log``.
    """
    formatter = logging.Formatter(
        f"{identifier} | %(levelname)s %(name)s %(asctime)s | %(filename)s:%(lineno)d "
        "| %(message)s")
    if filename:
        file_handler = logging.FileHandler(filename)
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
        logger.setLevel(logging.DEBUG)
    if host:
        http_handler = logging.handlers.HTTPHandler(host, "/log", method="POST")
        http_handler.setLevel(logging.DEBUG)
        logger.addHandler(http_handler)
        logger.setLevel(logging.DEBUG)


def warn_deprecated_feature(name: str) -> None:
    """Log Flower's warning for a deprecated feature ``name``, at WARNING."""
    logger.warning("DEPRECATED FEATURE: %s\n\n            This is a deprecated feature. It "
                   "will be removed\n            entirely in future versions of Flower.\n"
                   "        ", name)


def _lowest_other_handler_level() -> int:
    levels = [h.level for h in logger.handlers if h is not console_handler]
    return min(levels, default=logging.CRITICAL)
