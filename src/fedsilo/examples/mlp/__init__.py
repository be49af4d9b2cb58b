"""A small numpy MLP as a federation app: nothing in the path assumes scikit-learn.

``app/`` is the app as a user would write it: ``task.py`` (the network, its training and
its scoring, in numpy), ``client.py`` (the site program: a NumPyClient that reads its data
and settings from the job's Context) and ``server.py`` (the server function: FedAvg from a
seeded start, scored on the server's own test set). ``data`` writes example channels.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["APP_DIR"]

APP_DIR = Path(__file__).parent / "app"
