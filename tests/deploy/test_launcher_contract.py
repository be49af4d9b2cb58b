"""Every launcher keeps one contract: launch, describe, poll, wait, check (Popen-like).

Run over the local launcher (a site agent, real job processes) and the SageMaker launcher
(moto's server: jobs are recorded, not run, so they are Completed at once).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedsilo.deploy.errors import Conflict
from fedsilo.deploy.identity import Identity
from fedsilo.deploy.launchers import (
    TERMINAL,
    JobDefinition,
    Launcher,
    LocalLauncher,
    SageMakerLauncher,
)
from fedsilo.deploy.site import SiteLayout

from .conftest import AgentProcess, SiteFactory

pytestmark = pytest.mark.slow

Setup = tuple[Launcher, JobDefinition]


def _local(make_site: SiteFactory, start_agent: Callable[[SiteLayout], AgentProcess],
           caller: Identity, moto_endpoint: str) -> Setup:
    site = make_site()
    agent = start_agent(site)
    launcher = LocalLauncher(site="site1", endpoint=agent.endpoint, ca=site.ca_path,
                             role_arn=site.launch_role_arn(), identity=caller)
    return launcher, JobDefinition(
        name="contract-1", program="train.py", source="src/source.tar.gz",
        channels={"train": "train"}, output="fl",
        execution_role_arn=site.execution_role_arn(), hyperparameters={"epochs": "1"},
        max_runtime_s=60)


def _sagemaker(make_site: SiteFactory, start_agent: Callable[[SiteLayout], AgentProcess],
               caller: Identity, moto_endpoint: str) -> Setup:
    launcher = SageMakerLauncher(
        site="client-b", role_arn="arn:aws:iam::222233334444:role/FL-kickoff-client-job",
        region="us-east-1", endpoint_url=moto_endpoint,
        base_credentials={"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    return launcher, JobDefinition(
        name="contract-1", program="train.py", source="s3://code/source.tar.gz",
        channels={"train": "s3://data/train/"}, output="s3://artifacts/",
        execution_role_arn="arn:aws:iam::222233334444:role/service-role/Exec",
        hyperparameters={"epochs": "1"}, max_runtime_s=60)


@pytest.mark.parametrize("setup", [_local, _sagemaker], ids=["local", "sagemaker"])
def test_launcher_contract(setup: Callable[..., Setup], make_site: SiteFactory,
                           start_agent: Callable[[SiteLayout], AgentProcess], caller: Identity,
                           moto_endpoint: str, tmp_path: Path) -> None:
    launcher, definition = setup(make_site, start_agent, caller, moto_endpoint)
    try:
        handle = launcher.launch(definition)
        assert (handle.site, handle.name) == (launcher.site, "contract-1")
        first = handle.describe()
        assert first["TrainingJobName"] == "contract-1"
        assert first["HyperParameters"]["epochs"] == "1"
        assert first["HyperParameters"]["sagemaker_program"] == "train.py"
        assert first["StoppingCondition"] == {"MaxRuntimeInSeconds": 60}
        final = handle.wait(timeout=30, interval=0.1)
        assert final["TrainingJobStatus"] == "Completed" and handle.poll() == "Completed"
        assert final["TrainingJobStatus"] in TERMINAL
        handle.check()  # a completed job raises nothing
        # A restarted orchestrator reaches the same job by its name.
        again = launcher.attach("contract-1")
        assert again.poll() == "Completed" and again.last_["TrainingJobArn"] == \
            final["TrainingJobArn"]
        if setup is _local:  # moto accepts a name twice; SageMaker and sites answer ResourceInUse
            with pytest.raises(Conflict, match="contract-1"):
                launcher.launch(definition)
    finally:
        launcher.close()
