"""The training image's ``train`` command: SageMaker's script mode inside fedsilo's image.

SageMaker starts a training container as ``docker run <image> train`` after laying out
``/opt/ml`` (``$SAGEMAKER_BASE_DIR`` overrides the root, as in SageMaker's training toolkit):

    input/config/hyperparameters.json   every hyperparameter, as strings
    input/config/inputdataconfig.json   the channels, by name
    input/data/<channel>/               each channel's files (File mode)
    model/                              what the job leaves here becomes model.tar.gz
    output/failure                      the job's FailureReason, when it fails
    output/data/, checkpoints/          other output; checkpoints sync with CheckpointConfig

This command does what the toolkit does for script mode: fetches ``sagemaker_submit_directory``
(an ``s3://`` tarball, or a local path) into ``code/``, checks ``requirements.txt`` and a Flower
app's ``pyproject.toml`` dependencies against what the image holds (nothing is installed at run
time: private subnets have no package index),
runs ``sagemaker_program`` with the other hyperparameters as ``--key value`` and the usual
``SM_*`` variables, forwards SIGTERM to it (a stop or a spot interruption: time to save), and
passes on its exit status. A failure the program did not explain
itself is written to ``output/failure``.

As a site agent does, it also gives the program the job's Context (a JSON file named by
``FEDSILO_CONTEXT``; see :mod:`fedsilo.deploy.job_context`), which a Flower app's ClientApp
needs: ``run_config`` from the ``fedsilo_run_config`` hyperparameter, and a ``node_config``
with ``site-name`` (the ``fedsilo_site`` hyperparameter), ``job-name``, ``model-dir``,
``output-dir``, ``channel-<name>`` for every channel, and the site's own values: the JSON
object in ``node-config.json`` at the top of its ``config`` channel, which the site keeps in its
own bucket (a partition, say).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["job_context", "main", "script_mode_environment"]

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
FRAMEWORK_PREFIX = "sagemaker_"
FAILURE_LIMIT = 1024
NODE_CONFIG_CHANNEL = "config"
NODE_CONFIG_FILE = "node-config.json"


def _env_name(key: str) -> str:
    return key.upper().replace("-", "_").replace(".", "_")


def _decoded(value: str) -> Any:
    """A hyperparameter as the toolkit hands it over: JSON where it parses, else the text."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def script_mode_environment(base: Path, hyperparameters: dict[str, str],
                            channels: dict[str, Any], program: str,
                            arguments: list[str]) -> dict[str, str]:
    """The ``SM_*`` variables SageMaker's training toolkit gives a script-mode program."""
    user = {k: v for k, v in hyperparameters.items() if not k.startswith(FRAMEWORK_PREFIX)}
    resources_path = base / "input" / "config" / "resourceconfig.json"
    resources = json.loads(resources_path.read_text()) if resources_path.is_file() else {}
    env = {
        "SM_MODEL_DIR": str(base / "model"),
        "SM_OUTPUT_DIR": str(base / "output"),
        "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"),
        "SM_INPUT_DIR": str(base / "input"),
        "SM_INPUT_CONFIG_DIR": str(base / "input" / "config"),
        "SM_INPUT_DATA_CONFIG": json.dumps(channels),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps({k: _decoded(v) for k, v in user.items()}),
        "SM_USER_ARGS": json.dumps(arguments),
        "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_NAME": program.removesuffix(".py"),
        "SM_MODULE_DIR": str(base / "code"),
        "SM_CURRENT_HOST": str(resources.get("current_host", "algo-1")),
        "SM_HOSTS": json.dumps(resources.get("hosts", ["algo-1"])),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
    }
    env.update({f"SM_CHANNEL_{_env_name(c)}": str(base / "input" / "data" / c)
                for c in channels})
    env.update({f"SM_HP_{_env_name(k)}": v for k, v in user.items()})
    return env


def job_context(base: Path, hyperparameters: dict[str, str],
                channels: dict[str, Any]) -> dict[str, Any]:
    """The job's Context data (the module's docstring says what it holds)."""
    from fedsilo.deploy.jobspec import RUN_CONFIG_KEY, RUN_ID_KEY, SITE_KEY

    data = base / "input" / "data"
    own = data / NODE_CONFIG_CHANNEL / NODE_CONFIG_FILE
    node_config: dict[str, Any] = {}
    if own.is_file():
        node_config = json.loads(own.read_text())
        if not isinstance(node_config, dict):
            raise ValueError(f"{NODE_CONFIG_FILE} in the {NODE_CONFIG_CHANNEL} channel must "
                             "hold a JSON object")
    node_config.setdefault("site-name", hyperparameters.get(SITE_KEY, ""))
    node_config.update({"job-name": os.environ.get("TRAINING_JOB_NAME", ""),
                        "model-dir": str(base / "model"),
                        "output-dir": str(base / "output" / "data")})
    node_config.update({f"channel-{c}": str(data / c) for c in channels})
    raw = hyperparameters.get(RUN_CONFIG_KEY)
    run_config = json.loads(raw) if raw is not None else {
        k: _decoded(v) for k, v in hyperparameters.items() if not k.startswith(FRAMEWORK_PREFIX)}
    if not isinstance(run_config, dict):
        raise ValueError(f"hyperparameter {RUN_CONFIG_KEY} must be a JSON object")
    return {"run_id": hyperparameters.get(RUN_ID_KEY, node_config["job-name"]),
            "node_config": node_config, "run_config": run_config}


def _fetch_source(location: str, code: Path) -> None:
    from fedsilo.deploy.archive import extract_source

    if location.startswith("s3://"):
        import boto3

        from fedsilo.deploy.launchers.sagemaker import split_s3_uri

        bucket, key = split_s3_uri(location)
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "source.tar.gz"
            boto3.client("s3").download_file(bucket, key, str(archive))
            extract_source(archive, code)
    else:
        extract_source(Path(location), code)


def _fail(base: Path, reason: str) -> int:
    failure = base / "output" / "failure"
    failure.parent.mkdir(parents=True, exist_ok=True)
    if not failure.is_file() or not failure.read_text().strip():
        failure.write_text(reason[:FAILURE_LIMIT])
    print(f"fedsilo-train: {reason}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the job SageMaker describes under ``$SAGEMAKER_BASE_DIR`` (``/opt/ml``)."""
    from fedsilo.deploy.errors import DeployError
    from fedsilo.deploy.job_process import check_requirements

    base = Path(os.environ.get(BASE_DIR_ENV, "/opt/ml"))
    try:
        config = base / "input" / "config"
        hyperparameters = json.loads((config / "hyperparameters.json").read_text())
        channels = json.loads((config / "inputdataconfig.json").read_text())
        program = hyperparameters["sagemaker_program"]
        code = base / "code"
        _fetch_source(hyperparameters["sagemaker_submit_directory"], code)
        check_requirements(code)
    except (OSError, ValueError, KeyError, DeployError) as exc:
        return _fail(base, f"ClientError: the job could not start: {type(exc).__name__}: {exc}")
    for directory in ("model", "output/data"):
        (base / directory).mkdir(parents=True, exist_ok=True)
    arguments: list[str] = []
    for key, value in hyperparameters.items():
        if not key.startswith(FRAMEWORK_PREFIX):
            arguments += [f"--{key}", str(value)]
    env = {**os.environ, **script_mode_environment(base, hyperparameters, channels, program,
                                                   arguments)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
    context = Path(tempfile.mkdtemp(prefix="fedsilo-context-")) / "context.json"
    try:
        context.write_text(json.dumps(job_context(base, hyperparameters, channels), indent=2))
    except (OSError, ValueError) as exc:
        return _fail(base, f"ClientError: the job's context: {type(exc).__name__}: {exc}")
    env["FEDSILO_CONTEXT"] = str(context)
    child = subprocess.Popen([sys.executable, str(code / program), *arguments], cwd=code,
                             env=env)
    # StopTrainingJob (and a spot interruption) sends SIGTERM to this process, then SIGKILL
    # after a grace period: pass it on so the program can save its model or a checkpoint.
    signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    code_status = child.wait()
    if code_status != 0:
        return _fail(base, f"AlgorithmError: {program} exited with code {code_status}")
    (base / "output" / "success").touch()  # as the toolkit leaves it
    return 0


if __name__ == "__main__":
    sys.exit(main())
