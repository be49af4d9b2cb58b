"""The MLP app across site agents on this machine: ``fedsilo demo --app mlp``.

The work directory holds what the fraud demo's does (``federation.toml``, ``certs/``,
``server/test.npz``, ``sites/<site>/``, ``logs/``, ``run/``); the app's figures are the
server's test-set loss and accuracy, and its final arrays are ``run/final_arrays.npz``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from fedsilo.deploy.sandbox import claim_work_directory, run_local_federation
from fedsilo.examples.mlp import APP_DIR
from fedsilo.examples.mlp.data import write_example_data

__all__ = ["run_demo"]

RUN_ENTRIES = ("federation.toml", "certs", "server", "sites", "logs", "run")


def run_demo(output_dir: Path, rounds: int = 5, n_sites: int = 3, seed: int = 0,
             console: Console | None = None) -> dict[str, Any]:
    """Federate the MLP over ``n_sites`` site agents; return the final figures and files."""
    if rounds < 1 or n_sites < 1:
        raise ValueError("rounds and n_sites must be at least 1")
    console = console if console is not None else Console()
    output_dir = Path(os.path.abspath(Path(output_dir).expanduser()))
    claim_work_directory(output_dir, RUN_ENTRIES)
    with tempfile.TemporaryDirectory(prefix="fedsilo-mlp-") as staging:
        channels = write_example_data(Path(staging), n_sites, seed=seed)
        console.print(f"{n_sites} sites, each with its own mix of 3 classes; starting their "
                      "agents", highlight=False)
        result = run_local_federation(
            output_dir, channels, APP_DIR, server_data=Path(staging) / "server",
            console=console,
            run_config={"num-server-rounds": rounds, "seed": seed, "learning-rate": 0.05,
                        "local-epochs": 3, "batch-size": 16})
    figures = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    console.print(f"final MLP on the server's test set: {figures}; arrays in "
                  f"{result.files['arrays']} ({result.elapsed_s:.1f} s)", highlight=False)
    return {"metrics": result.metrics, "files": result.files,
            "jobs": {site: job.get("TrainingJobStatus") for site, job in result.jobs.items()}}
