"""The image's ``train`` command against an emulated ``/opt/ml``, as SageMaker lays it out.

The fraud app's whole run through this command (a federation, the model packed into
model.tar.gz) is in test_sagemaker_federation; here each clause of the contract on its own:
hyperparameters as ``--key value``, channels and ``SM_*`` variables, the model left in
``model/``, and a failure's reason in ``output/failure``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tomllib
from pathlib import Path

import boto3
import pytest

from .conftest import PROGRAMS, write_tarball
from .sagemaker_emulation import TRAIN, lay_out_opt_ml

ROWS = "0,a\n1,b\n2,c\n"


def _run(base: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRAIN, "train"], env={**os.environ, "SAGEMAKER_BASE_DIR": str(base),
                                                 **env},
                          capture_output=True, text=True, timeout=120)


def _job(tmp_path: Path, program: str, source: str | None = None,
         files: dict[str, str] | None = None) -> Path:
    tarball = write_tarball(tmp_path / "source.tar.gz", files or PROGRAMS)
    hyperparameters = {"epochs": "3", "lr": "0.1", "sagemaker_program": program,
                       "sagemaker_submit_directory": source or str(tarball)}
    return lay_out_opt_ml(tmp_path / "opt" / "ml", hyperparameters,
                          {"train": {"rows.csv": ROWS.encode()}})


def test_the_program_gets_script_mode_and_leaves_its_model_in_model_dir(tmp_path: Path) -> None:
    base = _job(tmp_path, "train.py")
    result = _run(base)
    assert result.returncode == 0, result.stderr
    model = json.loads((base / "model" / "model.json").read_text())
    assert model["epochs"] == "3" and model["lr"] == "0.1"  # --key value
    assert model["n_rows"] == 3  # read from SM_CHANNEL_TRAIN
    # SM_HPS without framework keys, values read as JSON where they parse (as the toolkit)
    assert model["hps"] == {"epochs": 3, "lr": 0.1}
    assert model["channels"] == ["train"]
    assert not (base / "output" / "failure").exists()
    assert (base / "output" / "success").is_file()


def test_the_source_tarball_comes_from_s3(tmp_path: Path, moto_endpoint: str) -> None:
    bucket = f"code-{secrets.token_hex(4)}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint, **credentials)
    s3.create_bucket(Bucket=bucket)
    tarball = write_tarball(tmp_path / "upload" / "source.tar.gz", PROGRAMS)
    s3.put_object(Bucket=bucket, Key="code/abc/source.tar.gz", Body=tarball.read_bytes())
    base = _job(tmp_path, "train.py", f"s3://{bucket}/code/abc/source.tar.gz")
    result = _run(base, AWS_ENDPOINT_URL=moto_endpoint, AWS_ACCESS_KEY_ID="testing",
                  AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    assert result.returncode == 0, result.stderr
    assert (base / "code" / "train.py").is_file() and (base / "model" / "model.json").is_file()


@pytest.mark.parametrize(("program", "files", "reason"), [
    ("explain.py", None, "ValueError: no fraud rows"),  # the program's own words are kept
    ("crash.py", None, "AlgorithmError: crash.py exited with code 3"),
    ("train.py", {"train.py": "", "requirements.txt": "no-such-package-fedsilo>=1\n"},
     "ClientError: the job could not start: ValidationError: requirements.txt asks for "
     "no-such-package-fedsilo>=1"),
])
def test_a_failure_leaves_its_reason_where_sagemaker_reads_it(
        tmp_path: Path, program: str, files: dict[str, str] | None, reason: str) -> None:
    base = _job(tmp_path, program, files=files)
    result = _run(base)
    assert result.returncode != 0
    assert (base / "output" / "failure").read_text().startswith(reason)


def test_the_image_runs_this_command_on_python_311() -> None:
    root = Path(__file__).resolve().parents[2]
    dockerfile = (root / "docker" / "sagemaker" / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile
    assert "exec fedsilo-train" in dockerfile and 'CMD ["train"]' in dockerfile
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fedsilo-train"] == "fedsilo.deploy.training_entry:main"
