"""The MLP app's site program: train on this site's ``train.npz`` each round.

It reads its settings from the job's Context (the JSON file ``FEDSILO_CONTEXT`` names):
``run_config`` (``learning-rate``, ``local-epochs``, ``batch-size``, ``seed``) as the
federation set them, and ``node_config`` (``channel-train``, ``model-dir``, ``site-name``)
as the site set them. Connection settings come as options, as in script mode; the federation
CA's PEM as ``ca.pem`` in the ``federation`` channel (SageMaker) or in the
``FEDSILO_ROOT_CERTIFICATES`` environment variable (a site agent). When the federation ends
it saves the final arrays as ``mlp.npz`` in the model directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import task  # the app's own module, next to this file

import fedsilo as fl


class MLPClient(fl.client.NumPyClient):
    """One site: 80% of its rows to train on, 20% to report validation figures."""

    def __init__(self, X: np.ndarray, y: np.ndarray, run_config: dict[str, Any],
                 site: str) -> None:
        cut = int(len(y) * 0.8)
        self.X_train, self.y_train = X[:cut], y[:cut]
        self.X_val, self.y_val = X[cut:], y[cut:]
        self.run_config = run_config
        self.site_seed = zlib.crc32(site.encode())
        self.params: task.Arrays = []

    def get_parameters(self, config: dict[str, Any]) -> task.Arrays:
        return self.params

    def fit(self, parameters: task.Arrays, config: dict[str, Any]
            ) -> tuple[task.Arrays, int, dict[str, Any]]:
        seed = int(self.run_config.get("seed", 0)) + 1000 * int(config.get("server-round", 0))
        self.params = task.train(
            parameters, self.X_train, self.y_train,
            epochs=int(self.run_config.get("local-epochs", 2)),
            learning_rate=float(self.run_config.get("learning-rate", 0.1)),
            batch_size=int(self.run_config.get("batch-size", 32)), seed=seed + self.site_seed)
        loss, accuracy = task.loss_and_accuracy(self.params, self.X_train, self.y_train)
        return self.params, len(self.y_train), {"train_loss": loss, "train_accuracy": accuracy}

    def evaluate(self, parameters: task.Arrays, config: dict[str, Any]
                 ) -> tuple[float, int, dict[str, Any]]:
        loss, accuracy = task.loss_and_accuracy(parameters, self.X_val, self.y_val)
        return loss, len(self.y_val), {"accuracy": accuracy}


def read_context() -> dict[str, Any]:
    """The job's Context, or an empty one when run by hand."""
    path = os.environ.get("FEDSILO_CONTEXT")
    if not path:
        return {"run_config": {}, "node_config": {}}
    return dict(json.loads(Path(path).read_text()))


def federation_ca() -> str | None:
    """The federation CA: the federation channel's ca.pem, else the environment's PEM."""
    channel = os.environ.get("SM_CHANNEL_FEDERATION")
    if channel and os.path.isfile(os.path.join(channel, "ca.pem")):
        return Path(channel, "ca.pem").read_text()
    return os.environ.get("FEDSILO_ROOT_CERTIFICATES")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The MLP app at one site.")
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--root-certificates", default=federation_ca())
    parser.add_argument("--max-wait-time", type=float, default=60.0)
    args, _run_config_options = parser.parse_known_args(argv)  # the Context has them, typed
    context = read_context()
    node = context["node_config"]
    output_dir = node.get("output-dir") or os.environ.get("SM_OUTPUT_DIR")
    try:
        channel = node.get("channel-train") or os.environ["SM_CHANNEL_TRAIN"]
        X, y = task.load_split(Path(channel) / "train.npz")
        client = MLPClient(X, y, context["run_config"], str(node.get("site-name", "")))
        identity = node.get("channel-identity")
        certificates = args.root_certificates.encode() if args.root_certificates else None
        fl.client.start_numpy_client(
            server_address=args.server_address, client=client,
            root_certificates=certificates, insecure=certificates is None,
            client_certificate=(os.path.join(identity, "client.pem"),
                                os.path.join(identity, "client.key")) if identity else None,
            max_wait_time=args.max_wait_time)
        model_dir = node.get("model-dir") or os.environ.get("SM_MODEL_DIR")
        if model_dir:
            np.savez(Path(model_dir) / "mlp.npz", *client.params)
    except Exception as exc:
        if output_dir:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "failure").write_text(f"{type(exc).__name__}: {exc}"[:1000])
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
