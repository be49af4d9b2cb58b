"""A hostile job request or program against its own site: what it must not reach."""

from __future__ import annotations

import tarfile

import pytest

from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.jobspec import parse_job_request
from fedsilo.deploy.runner import JobRunner

from .conftest import SiteFactory, job_request, wait_for


@pytest.mark.parametrize("key", [
    "train", "TRAIN", "identity", "spare", "model-dir", "model_dir", "Model.Dir", "output-dir",
    "output-data-dir", "SM_CHANNEL_TRAIN", "sm-model-dir", "channel-train", "hosts",
])
def test_hyperparameters_cannot_name_what_the_site_decides(make_site: SiteFactory,
                                                           key: str) -> None:
    """A channel's path or an output directory through ``--key value`` is refused at creation."""
    site, other = make_site("site1"), make_site("site2")
    (site.channels / "spare").mkdir()  # a channel of the site the request does not even use
    request = job_request("job-steal", program="argtrain.py",
                          hyperparameters={key: str(other.channels / "train")})
    with pytest.raises(ValidationError, match=f"hyperparameter {key!r} is reserved"):
        parse_job_request(site, request)


def test_the_channel_override_never_reaches_the_program(make_site: SiteFactory) -> None:
    """The attack as sent: ``--train`` at another site's channel. Refused; the honest request
    with the same program reads only its own channel."""
    site, other = make_site("site1"), make_site("site2")
    with pytest.raises(ValidationError, match="reserved"):
        parse_job_request(site, job_request("job-steal", program="argtrain.py",
                                            hyperparameters={"train": str(other.channels
                                                                          / "train")}))
    runner = JobRunner(site)
    runner.create(parse_job_request(site, job_request(
        "job-honest", program="argtrain.py", hyperparameters={"server-address": "h:1"})))
    described = wait_for(lambda: (d := runner.describe("job-honest"))["TrainingJobStatus"]
                         in ("Completed", "Failed") and d, 60, "the job to end")
    assert described["TrainingJobStatus"] == "Completed", described
    with tarfile.open(site.artifacts / "fl/job-honest/output/model.tar.gz") as tar:
        assert tar.extractfile("seen.txt").read() == b"0,secret-site1-0"  # type: ignore[union-attr]
