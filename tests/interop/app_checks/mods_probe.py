"""The client mods of ``lib`` (``flwr`` or ``fedsilo``) on one train message: LocalDpMod
without noise (sensitivity 0: the clipping alone), and the size mods (logged, the reply
passed on unchanged). Prints the replies' arrays as JSON."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
from local_grid import local_grid

lib = sys.argv[1]
app_api = importlib.import_module(f"{lib}.app")
clientapp = importlib.import_module(f"{lib}.clientapp")
mods = importlib.import_module(f"{lib}.clientapp.mod")


def build(mod_list: list[object]) -> object:
    app = clientapp.ClientApp(mods=mod_list)

    @app.train()
    def train(msg: object, context: object) -> object:
        arrays = msg.content["arrays"].to_numpy_ndarrays()  # type: ignore[attr-defined]
        p = int(context.node_config["partition-id"])  # type: ignore[attr-defined]
        trained = [a + np.float32(3 + p) for a in arrays]
        return app_api.Message(app_api.RecordDict({
            "arrays": app_api.ArrayRecord(trained),
            "metrics": app_api.MetricRecord({"num-examples": 1})}), reply_to=msg)

    return app


result = {}
cases = {"localdp_no_noise": [mods.LocalDpMod(2.5, 0.0, 1.0, 1e-5)],
         "sizes": [mods.message_size_mod, mods.arrays_size_mod]}
for name, mod_list in cases.items():
    grid = local_grid(lib, build(mod_list), 2)
    start = app_api.ArrayRecord([np.ones((2, 3), np.float32), np.arange(4, dtype=np.float32)])
    messages = [app_api.Message(app_api.RecordDict({"arrays": start,
                                                    "config": app_api.ConfigRecord({})}),
                                node, "train") for node in (1, 2)]
    replies = grid.send_and_receive(messages)
    result[name] = [[a.tolist() for a in r.content["arrays"].to_numpy_ndarrays()]
                    for r in replies]
print(json.dumps(result))
