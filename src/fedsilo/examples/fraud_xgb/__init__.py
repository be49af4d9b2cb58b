"""Fraud detection with federated XGBoost on the fraud example's sites.

``app/`` is a Flower app (``pyproject.toml`` with ``[tool.flwr.app.components]``): each
site's ClientApp grows trees on its own rows from the global model, the ServerApp bags them
with FedXgbBagging and scores the model on the server's test set. ``fedsilo demo --app
fraud-xgb`` runs it across site agents on this machine (:mod:`.demo`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APP_DIR"]

APP_DIR = Path(__file__).parent / "app"
