"""A training-job request, shaped like SageMaker's CreateTrainingJob, checked before it runs.

Local requests name everything relative to the site::

    {"TrainingJobName": "fl-site1-1700000000",
     "HyperParameters": {"max-iter": "10", "server-address": "10.0.0.5:8080",
                         "sagemaker_program": "client.py",
                         "sagemaker_submit_directory": "fraud/source.tar.gz"},   # in code/
     "AlgorithmSpecification": {"TrainingImage": "python", "TrainingInputMode": "File"},
     "RoleArn": "arn:fedsilo:iam::site1:role/service-role/FL-execution",
     "InputDataConfig": [{"ChannelName": "train",
                          "DataSource": {"SiteDataSource": {"Path": "train"}}}],  # in channels/
     "OutputDataConfig": {"OutputPath": "fl"},                                   # in artifacts/
     "ResourceConfig": {"InstanceType": "local", "InstanceCount": 1, "VolumeSizeInGB": 1},
     "StoppingCondition": {"MaxRuntimeInSeconds": 3600}}

:func:`parse_job_request` checks the fields and SageMaker's limits and resolves each path with
:meth:`SiteLayout.inside`, so a request cannot point at anything outside the site. Hyperparameters
become the program's ``--key value`` arguments, so a name the site decides (a channel, the model
or output directory, anything shaped like ``SM_*``) is refused: otherwise ``--train PATH`` would
win over ``SM_CHANNEL_TRAIN`` in a program that reads both, as script-mode programs do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsilo.deploy.app_approval import check_app
from fedsilo.deploy.errors import NotFound, ValidationError
from fedsilo.deploy.site import SiteLayout

__all__ = ["JobSpec", "normalised_name", "parse_job_request", "PROGRAM_KEY", "RUN_CONFIG_KEY",
           "RUN_ID_KEY", "SITE_KEY", "SUBMIT_DIRECTORY_KEY"]

PROGRAM_KEY = "sagemaker_program"
SUBMIT_DIRECTORY_KEY = "sagemaker_submit_directory"
# The federation's run config (JSON, typed) and run id, for the job's Context.
RUN_CONFIG_KEY = "fedsilo_run_config"
RUN_ID_KEY = "fedsilo_run_id"
SITE_KEY = "fedsilo_site"  # the federation's name for the site, for a SageMaker job's Context
# Hyperparameters with these prefixes are for the framework, not options of the program.
FRAMEWORK_PREFIXES = ("sagemaker_", "fedsilo_")
MAX_RUNTIME_LIMIT_S = 28 * 86400
_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,64}")
_HP_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,256}")
# Normalised names (lower case, '-' and '.' as '_') of what the site decides for a job.
_SITE_DECIDED = {"model_dir", "output_dir", "output_data_dir", "data_dir", "input_dir",
                 "input_data_dir", "channels", "channel_names", "hosts", "current_host",
                 "num_cpus", "num_gpus", "module_dir", "user_entry_point", "training_env",
                 "hps", "user_args", "training_job_name"}
_KNOWN = {"TrainingJobName", "HyperParameters", "AlgorithmSpecification", "RoleArn",
          "InputDataConfig", "OutputDataConfig", "ResourceConfig", "StoppingCondition",
          "Environment", "VpcConfig", "Tags"}


@dataclass(frozen=True)
class JobSpec:
    """A checked request: resolved paths inside the site and the request as sent."""

    name: str
    hyperparameters: dict[str, str]
    program: str
    source: Path
    role_arn: str
    channels: dict[str, Path]
    output: Path
    max_runtime_s: int
    environment: dict[str, str]
    request: dict[str, Any]

    @property
    def program_hyperparameters(self) -> dict[str, str]:
        """The hyperparameters meant for the program (framework keys left out)."""
        return {k: v for k, v in self.hyperparameters.items()
                if not k.startswith(FRAMEWORK_PREFIXES)}

    @property
    def arguments(self) -> list[str]:
        """Hyperparameters as script mode passes them: ``--key value``, framework keys left out."""
        args: list[str] = []
        for key, value in self.program_hyperparameters.items():
            args += [f"--{key}", value]
        return args


def parse_job_request(site: SiteLayout, request: Any) -> JobSpec:
    """Check ``request`` against the CreateTrainingJob shape and the site's directories."""
    if not isinstance(request, dict):
        raise ValidationError("a training job request must be a JSON object")
    unknown = set(request) - _KNOWN
    if unknown:
        raise ValidationError(f"unknown fields {sorted(unknown)}; CreateTrainingJob takes "
                              f"{sorted(_KNOWN)}")
    name = _required(request, "TrainingJobName", str)
    if not _JOB_NAME.fullmatch(name):
        raise ValidationError(f"TrainingJobName {name!r} must be 1 to 63 letters, digits and "
                              "hyphens, starting and ending with a letter or digit")
    hps = _string_map(request.get("HyperParameters", {}), "HyperParameters", 100, 2500)
    for key in hps:
        if not _HP_KEY.fullmatch(key):
            raise ValidationError(f"hyperparameter name {key!r} may hold letters, digits, "
                                  "'_', '.', '-' only")
    for key in (PROGRAM_KEY, SUBMIT_DIRECTORY_KEY):
        if key not in hps:
            raise ValidationError(f"HyperParameters needs {key!r} (script mode: the entry "
                                  "program and the source tarball in the site's code store)")
    source = site.inside(site.code, hps[SUBMIT_DIRECTORY_KEY], SUBMIT_DIRECTORY_KEY)
    if not source.is_file():
        raise NotFound(f"no source tarball {hps[SUBMIT_DIRECTORY_KEY]!r} in the site's code "
                       "store")
    check_app(site, hps[SUBMIT_DIRECTORY_KEY], source)  # an uploaded app runs once approved
    program = hps[PROGRAM_KEY]
    site.inside(site.code, program, PROGRAM_KEY)  # same rules: relative, no '..'
    if not program.endswith(".py"):
        raise ValidationError(f"{PROGRAM_KEY} {program!r} must be a Python file")

    algorithm = _object(request, "AlgorithmSpecification")
    if algorithm.get("TrainingInputMode", "File") != "File":
        raise ValidationError("TrainingInputMode must be 'File': channels are directories")
    role = _required(request, "RoleArn", str)

    channels: dict[str, Path] = {}
    config = request.get("InputDataConfig", [])
    if not isinstance(config, list) or len(config) > 20:
        raise ValidationError("InputDataConfig must be a list of at most 20 channels")
    for entry in config:
        channel = _required(entry, "ChannelName", str) if isinstance(entry, dict) else ""
        if not _CHANNEL_NAME.fullmatch(channel):
            raise ValidationError(f"ChannelName {channel!r}: 1 to 64 of letters, digits, .-_")
        if channel in channels:
            raise ValidationError(f"channel {channel!r} is given twice")
        source_cfg = _object(_object(entry, "DataSource"), "SiteDataSource")
        path = site.inside(site.channels, _required(source_cfg, "Path", str),
                           f"channel {channel!r}")
        if not path.is_dir():
            raise NotFound(f"channel {channel!r}: no directory {path.name!r} in the site's "
                           "channels")
        channels[channel] = path

    _refuse_reserved(hps, [*channels, *_channel_dirs(site)])
    output = site.inside(site.artifacts, _required(_object(request, "OutputDataConfig"),
                                                   "OutputPath", str), "OutputPath")
    resources = request.get("ResourceConfig", {})
    if not isinstance(resources, dict) or resources.get("InstanceCount", 1) != 1:
        raise ValidationError("ResourceConfig.InstanceCount must be 1 at a local site")
    stopping = request.get("StoppingCondition", {"MaxRuntimeInSeconds": 86400})
    max_runtime = stopping.get("MaxRuntimeInSeconds") if isinstance(stopping, dict) else None
    if not isinstance(max_runtime, int) or not 1 <= max_runtime <= MAX_RUNTIME_LIMIT_S:
        raise ValidationError(f"StoppingCondition.MaxRuntimeInSeconds must be an integer from "
                              f"1 to {MAX_RUNTIME_LIMIT_S}")
    environment = _string_map(request.get("Environment", {}), "Environment", 100, 4096)
    reserved = [k for k in environment if k.startswith("SM_") or k in ("PYTHONPATH", "PATH")]
    if reserved:
        raise ValidationError(f"Environment may not set {reserved}: the site sets them")
    return JobSpec(name=name, hyperparameters=hps, program=program, source=source,
                   role_arn=role, channels=channels, output=output, max_runtime_s=max_runtime,
                   environment=environment, request=request)


def normalised_name(key: str) -> str:
    """A hyperparameter or channel name as programs see it: ``--model-dir`` is ``model_dir``."""
    return key.lower().replace("-", "_").replace(".", "_")


def _refuse_reserved(hps: dict[str, str], channel_names: list[str]) -> None:
    """Refuse hyperparameters that would name a path the site decides, as SageMaker refuses
    reserved names: ``train`` (a channel), ``model-dir``, ``SM_CHANNEL_X``, ``channel-x``."""
    channels = {normalised_name(c) for c in channel_names}
    for key in hps:
        if key.startswith(FRAMEWORK_PREFIXES):
            continue  # framework keys: read by the site, never passed to the program
        name = normalised_name(key)
        if name in channels:
            reason = "it is a channel's name; the channel's path is the site's SM_CHANNEL_*"
        elif name in _SITE_DECIDED or name.startswith(("sm_", "channel_")):
            reason = "the site sets this value (SM_* variables); a request cannot override it"
        else:
            continue
        raise ValidationError(f"hyperparameter {key!r} is reserved: {reason}")


def _channel_dirs(site: SiteLayout) -> list[str]:
    return [p.name for p in site.channels.iterdir()] if site.channels.is_dir() else []


def _required(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise ValidationError(f"{key} is required ({kind.__name__})")
    return value


def _object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise ValidationError(f"{key} is required (an object)")
    return value


def _string_map(value: Any, what: str, max_items: int, max_len: int) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > max_items:
        raise ValidationError(f"{what} must be an object of at most {max_items} entries")
    for key, item in value.items():
        if not isinstance(item, str) or len(item) > max_len:
            raise ValidationError(f"{what}[{key!r}] must be a string of at most {max_len} "
                                  "characters")
    return dict(value)
