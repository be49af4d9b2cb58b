"""Launchers start one job definition on a site, locally or on SageMaker, behind one interface.

``launcher.launch(definition)`` returns a :class:`JobHandle` with ``describe``, ``poll``,
``wait`` and ``stop``, in the manner of ``subprocess.Popen``.
"""

from __future__ import annotations

from fedsilo.deploy.launchers.base import (
    FEDERATION_CHANNEL,
    ROOT_CERTIFICATES_ENV,
    TERMINAL,
    JobDefinition,
    JobHandle,
    Launcher,
)
from fedsilo.deploy.launchers.local import LocalLauncher
from fedsilo.deploy.launchers.sagemaker import SageMakerLauncher

__all__ = ["FEDERATION_CHANNEL", "ROOT_CERTIFICATES_ENV", "TERMINAL", "JobDefinition",
           "JobHandle", "Launcher", "LocalLauncher", "SageMakerLauncher"]
