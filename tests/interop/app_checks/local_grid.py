"""An in-process Grid for the probes: each message goes straight to a ClientApp in this
process, in the order sent (Flower's simulation needs Ray; this needs nothing)."""

from __future__ import annotations

import importlib
from typing import Any


def local_grid(lib: str, client_app: Any, num_nodes: int) -> Any:
    """A Grid of ``lib`` (``flwr`` or ``fedsilo``) with nodes 1..num_nodes, node ``n`` being
    partition ``n - 1`` of ``num_nodes``."""
    app_api = importlib.import_module(f"{lib}.app")
    base = importlib.import_module(f"{lib}.serverapp").Grid
    if lib == "flwr":
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0

    class LocalGrid(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            self.contexts = {n: app_api.Context(run_id=1, node_id=n, node_config={
                "partition-id": n - 1, "num-partitions": num_nodes},
                state=app_api.RecordDict(), run_config={}) for n in range(1, num_nodes + 1)}
            self.replies: dict[str, Any] = {}

        @property
        def run(self) -> Any:
            return None

        def set_run(self, run_id: int) -> None:
            return None

        def create_message(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        def get_node_ids(self) -> list[int]:
            return list(self.contexts)

        def push_messages(self, messages: Any) -> list[str]:
            ids = []
            for message in messages:
                message_id = f"m{len(self.replies)}-{len(ids)}"
                if lib == "flwr":
                    message.metadata.__dict__["_message_id"] = message_id
                else:
                    message.metadata.message_id = message_id
                node = message.metadata.dst_node_id
                self.replies[message_id] = client_app(message, self.contexts[node])
                ids.append(message_id)
            return ids

        def pull_messages(self, message_ids: Any) -> list[Any]:
            return [self.replies.pop(i) for i in message_ids]

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
            return self.pull_messages(self.push_messages(messages))

    return LocalGrid()
