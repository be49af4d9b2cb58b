"""The site's training program: join the federation as this site's client (script mode).

The site runs it as a training job: hyperparameters arrive as ``--key value`` options (the
federation's run config among them; options this program does not use are ignored), the
``train`` channel and the model directory as ``SM_CHANNEL_TRAIN`` and ``SM_MODEL_DIR``. It
connects to the federation server over TLS: the federation CA's PEM text arrives as
``ca.pem`` in the ``federation`` channel (SageMaker) or in the ``FEDSILO_ROOT_CERTIFICATES``
environment variable (a local site), never as a hyperparameter; an ``identity`` channel,
when the site gives one, holds the site's own client certificate and key (``client.pem``,
``client.key``) for servers that admit enrolled sites only. It trains
on the channel each round; when the federation ends it saves ``model.joblib`` in the model
directory, which the site packs into ``model.tar.gz``. On failure it writes the reason to
``$SM_OUTPUT_DIR/failure`` for the site to report and exits non-zero. Only parameters, example
counts and metrics leave the site.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import utils  # the program's own module, next to this file in the source tarball

import fedsilo as fl
from fedsilo.common.logger import update_console_handler
from fedsilo.examples.fraud.client import FraudClient

ROOT_CERTIFICATES_ENV = "FEDSILO_ROOT_CERTIFICATES"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Federated fraud model: one site's client.")
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--penalty", default="l2")
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--root-certificates", default=_federation_ca(),
                        help="PEM text of the federation CA (default: the federation "
                             f"channel's ca.pem, or ${ROOT_CERTIFICATES_ENV}); without it, "
                             "plain text")
    parser.add_argument("--max-wait-time", type=float, default=60.0)
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    known, _others = parser.parse_known_args(argv)  # e.g. num-server-rounds: the server's
    return known


def _federation_ca() -> str | None:
    """The federation CA: the federation channel's ca.pem, else the environment's PEM."""
    channel = os.environ.get("SM_CHANNEL_FEDERATION")
    if channel and os.path.isfile(os.path.join(channel, "ca.pem")):
        with open(os.path.join(channel, "ca.pem")) as handle:
            return handle.read()
    return os.environ.get(ROOT_CERTIFICATES_ENV)


def _client_identity() -> tuple[str, str] | None:
    """The site's own certificate and key, when the site gives its job an identity channel."""
    channel = os.environ.get("SM_CHANNEL_IDENTITY")
    if not channel:
        return None
    return os.path.join(channel, "client.pem"), os.path.join(channel, "client.key")


def main(argv: list[str] | None = None) -> int:
    update_console_handler(level=logging.INFO, timestamps=True)
    output_dir = os.environ.get("SM_OUTPUT_DIR")
    try:
        args = parse_args(argv)
        if not args.train:
            raise ValueError("no train channel: set SM_CHANNEL_TRAIN or pass --train")
        site = utils.load_data(args.train)
        logging.info("%s: %d training rows, %d validation rows; joining %s", site.name,
                     len(site.X_train), len(site.X_val), args.server_address)
        model = utils.initial_model(args.penalty, args.max_iter, site.X_train.shape[1])
        client = FraudClient(site, model)
        certificates = args.root_certificates.encode() if args.root_certificates else None
        fl.client.start_numpy_client(server_address=args.server_address, client=client,
                                     root_certificates=certificates,
                                     insecure=certificates is None,
                                     client_certificate=_client_identity(),
                                     max_wait_time=args.max_wait_time)
        if args.model_dir:
            path = utils.save_model(args.model_dir, client.model)
            logging.info("%s: model saved to %s", site.name, path)
    except Exception as exc:
        utils.write_failure(output_dir, f"{type(exc).__name__}: {exc}")
        logging.exception("the site's client failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
