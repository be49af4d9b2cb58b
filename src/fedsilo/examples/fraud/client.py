"""A site's federated client, and the training-job script that runs it.

:class:`FraudClient` trains the site's logistic regression on the site's own training rows,
starting each round from the global parameters the server sends, and evaluates global
parameters on the site's validation rows. Only parameters, example counts and metrics leave
the site.

Run as a script the way a managed training job runs an entry point ("script mode"):
hyperparameters arrive as command-line options, the data channel and the model directory as
environment variables (``SM_CHANNEL_TRAIN``, ``SM_MODEL_DIR``) unless given as options::

    python -m fedsilo.examples.fraud.client --server-address 10.0.0.5:8080 \\
        --penalty l2 --max-iter 10 --train /data/site1/train --model-dir /models/site1

Without ``--root-certificates`` the connection is plain text (insecure), meant for a private
network such as peered VPCs; with it, TLS against the given CA certificates. When the federation
ends the site's model (holding the final global parameters) is saved as ``model.joblib``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import fedsilo as fl
from fedsilo.common import NDArrays, Scalar
from fedsilo.common.logger import update_console_handler
from fedsilo.examples.fraud.model import (
    PENALTIES,
    fit_proximal,
    get_model_parameters,
    new_model,
    save_model,
    set_initial_params,
    set_model_params,
)
from fedsilo.examples.fraud.prepare import ChannelError, SiteData, load_site_channel

__all__ = ["FraudClient", "main"]

log = logging.getLogger("fedsilo.examples.fraud")


class FraudClient(fl.client.NumPyClient):
    """Trains and evaluates one site's model on the site's own data."""

    def __init__(self, site: SiteData, model: LogisticRegression | None = None) -> None:
        self.site = site
        self.model = model if model is not None else new_model()
        if not hasattr(self.model, "coef_"):
            set_initial_params(self.model, n_features=site.X_train.shape[1])

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return get_model_parameters(self.model)

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Continue from the global ``parameters`` for ``max_iter`` iterations on local rows.

        A ``proximal_mu`` in the config (sent by FedProx) switches to FedProx's local
        objective, trained by :func:`fit_proximal`; without it, scikit-learn's solver runs.
        """
        if "proximal_mu" in config:
            mu = config["proximal_mu"]
            if isinstance(mu, bool) or not isinstance(mu, int | float):
                raise ValueError(f"proximal_mu must be a number, got {mu!r}")
            fit_proximal(self.model, self.site.X_train, self.site.y_train, parameters,
                         proximal_mu=float(mu))
        else:
            set_model_params(self.model, parameters)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # few iterations a round do not converge
                self.model.fit(self.site.X_train, self.site.y_train)
        train_loss = log_loss(self.site.y_train, self.model.predict_proba(self.site.X_train),
                              labels=self.model.classes_)
        metrics: dict[str, Scalar] = {
            "train_loss": float(train_loss),
            "train_accuracy": float(self.model.score(self.site.X_train, self.site.y_train)),
        }
        log.info("%s round %s: train loss %.4f", self.site.name,
                 config.get("server_round", "?"), train_loss)
        return get_model_parameters(self.model), len(self.site.X_train), metrics

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        """Log loss and accuracy of the global ``parameters`` on the site's validation rows."""
        set_model_params(self.model, parameters)
        loss = log_loss(self.site.y_val, self.model.predict_proba(self.site.X_val),
                        labels=self.model.classes_)
        accuracy = self.model.score(self.site.X_val, self.site.y_val)
        return float(loss), len(self.site.X_val), {"accuracy": float(accuracy)}


def main(argv: Sequence[str] | None = None) -> int:
    """Load the site's channel, serve the federation until it ends, save the model."""
    args = _parser().parse_args(argv)
    update_console_handler(level=logging.INFO, timestamps=True)
    if args.train is None:
        print("error: no training data: pass --train DIR or set SM_CHANNEL_TRAIN",
              file=sys.stderr)
        return 2
    try:
        site = load_site_channel(args.train)
    except ChannelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    client = FraudClient(site, new_model(args.penalty, args.max_iter))
    certificates = None if args.root_certificates is None else str(args.root_certificates)
    log.info("%s: %d training rows, %d validation rows; joining %s", site.name,
             len(site.X_train), len(site.X_val), args.server_address)
    try:
        fl.client.start_numpy_client(
            server_address=args.server_address,
            client=client,
            root_certificates=certificates,
            insecure=certificates is None,
            max_wait_time=args.max_wait_time,
        )
    except ConnectionError as exc:
        print(f"error: {site.name}: {exc}", file=sys.stderr)
        return 1
    if args.model_dir is None:
        log.info("%s: federation over; no --model-dir or SM_MODEL_DIR, model not saved",
                 site.name)
    else:
        path = save_model(args.model_dir, client.model)
        log.info("%s: federation over; model saved to %s", site.name, path)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fedsilo.examples.fraud.client",
        description="Join a federation as one site and train the fraud model on its data.")
    parser.add_argument("--server-address", required=True, help="HOST:PORT of the server")
    parser.add_argument("--penalty", default="l2", choices=PENALTIES)
    parser.add_argument("--max-iter", type=int, default=10,
                        help="solver iterations per round (default: 10)")
    parser.add_argument("--train", type=Path, default=_env_path("SM_CHANNEL_TRAIN"),
                        help="the site's train channel (default: $SM_CHANNEL_TRAIN)")
    parser.add_argument("--model-dir", type=Path, default=_env_path("SM_MODEL_DIR"),
                        help="where to save model.joblib (default: $SM_MODEL_DIR)")
    parser.add_argument("--root-certificates", type=Path, default=None,
                        help="CA certificates (PEM) for TLS; without it, plain text")
    parser.add_argument("--max-wait-time", type=float, default=60.0,
                        help="seconds to keep retrying an unreachable server (default: 60)")
    return parser


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


if __name__ == "__main__":
    sys.exit(main())
