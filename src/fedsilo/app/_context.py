"""``Context``: what a ClientApp or ServerApp knows of its run and its node."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedsilo.app._recorddict import RecordDict

__all__ = ["Context", "UserConfig", "UserConfigValue"]

UserConfigValue = bool | float | int | str
UserConfig = dict[str, UserConfigValue]


@dataclass
class Context:
    """The run and the node an app runs in.

    Parameters
    ----------
    run_id:
        The run.
    node_id:
        This node (0 for the ServerApp's side).
    node_config:
        The node's own settings (``partition-id``, ``num-partitions``, ...), the same for
        every run on the node.
    state:
        Records kept on this node between the messages of one run; never sent.
    run_config:
        The run's settings: ``[tool.flwr.app.config]`` with the run's overrides
        (keys as written there, dotted keys included).
    """

    run_id: int
    node_id: int
    node_config: UserConfig
    state: RecordDict = field(default_factory=RecordDict)
    run_config: UserConfig = field(default_factory=dict)
