"""What a job's containment costs: a trivial job's time from creation to Completed.

    python bench/job_start.py [REPEATS]

Three sites on one machine run the same one-line program REPEATS times (default 10), one job
at a time: isolated (the default: own PID, mount and user namespaces, a root filesystem of the
job's own paths), contained only (``"isolate_jobs": false``: own PID namespace), and a plain
process group (what a site gets where namespaces are not allowed). Prints the median seconds
of each and its ratio to the plain process group.
"""

from __future__ import annotations

import io
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from fedsilo.deploy.jobspec import parse_job_request
from fedsilo.deploy.runner import JobRunner
from fedsilo.deploy.site import init_site


def _site(root: Path, name: str, isolate: bool) -> JobRunner:
    site = init_site(root / name, name, isolate_jobs=isolate)
    (site.channels / "train").mkdir()
    program = b"print('done')\n"
    with tarfile.open(site.code / "source.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(program)
        tar.addfile(info, io.BytesIO(program))
    return JobRunner(site, poll_s=0.01)


def _time_jobs(runner: JobRunner, repeats: int) -> list[float]:
    times = []
    for number in range(repeats):
        name = f"job-{number}"
        request = {
            "TrainingJobName": name,
            "HyperParameters": {"sagemaker_program": "train.py",
                                "sagemaker_submit_directory": "source.tar.gz"},
            "AlgorithmSpecification": {"TrainingImage": "python", "TrainingInputMode": "File"},
            "RoleArn": runner.site.execution_role_arn(),
            "InputDataConfig": [{"ChannelName": "train",
                                 "DataSource": {"SiteDataSource": {"Path": "train"}}}],
            "OutputDataConfig": {"OutputPath": "out"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600}}
        start = time.perf_counter()
        runner.create(parse_job_request(runner.site, request))
        while (status := runner.describe(name)["TrainingJobStatus"]) == "InProgress":
            time.sleep(0.005)
        if status != "Completed":
            raise SystemExit(f"{name} ended {status}: {runner.describe(name)}")
        times.append(time.perf_counter() - start)
    return times


def main(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        isolated = _site(root, "isolated", True)
        contained = _site(root, "contained", False)
        plain = _site(root, "plain", False)
        plain.contained = False  # as on a machine without namespaces
        if not isolated.contained:
            raise SystemExit("this machine does not allow user namespaces: nothing to compare")
        medians = {label: statistics.median(_time_jobs(runner, repeats))
                   for label, runner in (("process group", plain), ("contained", contained),
                                         ("isolated", isolated))}
    base = medians["process group"]
    for label, seconds in medians.items():
        print(f"{label:14s} {seconds:6.3f} s median per job   x{seconds / base:5.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
