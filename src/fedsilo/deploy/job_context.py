"""The Context a site job gets, as Flower gives a ClientApp: ``node_config`` and ``run_config``.

The runner writes ``jobs/<job>/context.json`` before the program starts and names it in the
job's ``FEDSILO_CONTEXT`` environment variable::

    {"run_id": "20260101120000-ab12",
     "node_config": {"site-name": "site1", "job-name": "fl-site1-...",
                     "model-dir": "...", "output-dir": "...",
                     "channel-train": "/.../channels/train", ...,
                     "partition-id": 0},               # whatever site.json's node_config sets
     "run_config": {"penalty": "l2", "max-iter": 10}}  # the app's, as the federation set it

``node_config`` is the site's to decide: its name, where its channels are, and the values of
``node_config`` in its ``site.json``; the federation cannot set any of it. ``run_config`` is
the federation's, with its types kept (it travels as one JSON hyperparameter); a job started
without one gets the program's hyperparameters as strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.jobspec import RUN_CONFIG_KEY, RUN_ID_KEY, JobSpec
from fedsilo.deploy.site import SiteLayout

__all__ = ["job_context", "write_job_context"]

CONTEXT_FILE = "context.json"


def job_context(site: SiteLayout, spec: JobSpec, job_dir: Path) -> dict[str, Any]:
    """The Context data of job ``spec`` at ``site`` (see the module's docstring)."""
    node_config: dict[str, Any] = dict(site.config().get("node_config") or {})
    node_config.update({
        "site-name": site.name,
        "job-name": spec.name,
        "model-dir": str(job_dir / "model"),
        "output-dir": str(job_dir / "output"),
    })
    for channel, path in spec.channels.items():
        node_config[f"channel-{channel}"] = str(path.resolve())
    raw = spec.hyperparameters.get(RUN_CONFIG_KEY)
    if raw is None:
        run_config: dict[str, Any] = dict(spec.program_hyperparameters)
    else:
        try:
            run_config = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"hyperparameter {RUN_CONFIG_KEY} is not JSON: {exc}") from exc
        if not isinstance(run_config, dict):
            raise ValidationError(f"hyperparameter {RUN_CONFIG_KEY} must be a JSON object")
    return {"run_id": spec.hyperparameters.get(RUN_ID_KEY, spec.name),
            "node_config": node_config, "run_config": run_config}


def write_job_context(site: SiteLayout, spec: JobSpec, job_dir: Path) -> Path:
    """Write ``context.json`` into the job's directory and return its path."""
    path = job_dir / CONTEXT_FILE
    path.write_text(json.dumps(job_context(site, spec, job_dir), indent=2) + "\n")
    return path
