"""Apps travel to sites as content-addressed archives, and sites decide which of them run.

The packing is checked for reproducibility; the site's checks (digest, approval, signature)
against the job request parser, where a refused app must stop a job before it exists; and
the whole path through a real site agent over TLS: an orchestrator without the upload
permission cannot place code, an unapproved app is refused at job creation with the reason,
a tampered archive is refused, and an approved app runs with the Context the site gives it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fedsilo.deploy.app_approval import (
    approve_app,
    check_app,
    sign_app,
    store_upload,
    trust_signer,
)
from fedsilo.deploy.app_archive import app_store_name, pack_app, sha256_hex
from fedsilo.deploy.errors import AccessDenied, ValidationError
from fedsilo.deploy.identity import generate_signing_key
from fedsilo.deploy.jobspec import parse_job_request
from tests.deploy.conftest import SiteFactory, job_request, wait_for

PROGRAM = """
import json, os, pathlib, sys
context = json.loads(pathlib.Path(os.environ["FEDSILO_CONTEXT"]).read_text())
pathlib.Path(os.environ["SM_MODEL_DIR"], "seen.json").write_text(json.dumps(
    {"context": context, "argv": sys.argv[1:]}))
"""


def _app(root: Path, program: str = PROGRAM) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "client.py").write_text(program)
    (root / "helpers").mkdir(exist_ok=True)
    (root / "helpers" / "note.txt").write_text("kept\n")
    return root


def test_packing_is_reproducible_and_names_the_content(tmp_path: Path) -> None:
    app = _app(tmp_path / "app")
    first = pack_app(app)
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "client.cpython-311.pyc").write_bytes(b"\x00cache")
    os.utime(app / "client.py", (1, 1))  # times are not part of the archive
    (app / "outside").symlink_to(tmp_path)  # nor are links, which could lead anywhere
    again = pack_app(app)
    assert again.data == first.data and again.digest == sha256_hex(first.data)
    assert again.store_name == f"apps/{again.digest}.tar.gz"
    (app / "helpers" / "note.txt").write_text("kepT\n")  # one byte changed: another app
    assert pack_app(app).digest != first.digest
    with pytest.raises(ValidationError, match="does not exist"):
        pack_app(tmp_path / "nowhere")


def test_a_site_runs_an_uploaded_app_only_once_it_approves_it(make_site: SiteFactory,
                                                              tmp_path: Path) -> None:
    site = make_site(allow_code_upload=True)
    archive = pack_app(_app(tmp_path / "app"))
    request = job_request("job-1", program="client.py", source=archive.store_name)
    store_upload(site, archive.store_name, archive.data)
    with pytest.raises(AccessDenied, match=f"app sha256:{archive.digest} is not approved "
                                           "at site site1"):
        parse_job_request(site, request)

    approve_app(site, f"sha256:{archive.digest}")
    assert parse_job_request(site, request).source.read_bytes() == archive.data

    stored = site.code / archive.store_name
    tampered = bytearray(archive.data)
    tampered[len(tampered) // 2] ^= 0x01
    stored.write_bytes(bytes(tampered))
    with pytest.raises(ValidationError, match="was altered"):
        parse_job_request(site, request)
    # The site's own code (placed by its owner) is not an upload and is not checked.
    parse_job_request(site, job_request("job-2"))


def test_a_signature_by_a_trusted_key_stands_for_approval(make_site: SiteFactory,
                                                          tmp_path: Path) -> None:
    site = make_site(allow_code_upload=True)
    archive = pack_app(_app(tmp_path / "app"))
    store_upload(site, archive.store_name, archive.data)
    publisher, stranger = generate_signing_key(), generate_signing_key()
    trust_signer(site, publisher.public_key())
    path = site.code / archive.store_name

    store_upload(site, f"apps/{archive.digest}.sig", sign_app(stranger, archive.digest))
    with pytest.raises(AccessDenied, match="not approved"):
        check_app(site, archive.store_name, path)
    store_upload(site, f"apps/{archive.digest}.sig", sign_app(publisher, archive.digest))
    check_app(site, archive.store_name, path)
    # The publisher's signature over another app's digest does not carry over.
    other = pack_app(_app(tmp_path / "other", PROGRAM + "# another\n"))
    store_upload(site, other.store_name, other.data)
    store_upload(site, f"apps/{other.digest}.sig", sign_app(publisher, archive.digest))
    with pytest.raises(AccessDenied, match="not approved"):
        check_app(site, other.store_name, site.code / other.store_name)


@pytest.mark.parametrize(("name", "data", "message"), [
    ("apps/" + "0" * 64 + ".tar.gz", b"not the content that hashes to zeros",
     "not the digest in the name"),
    ("apps/evil.tar.gz", b"x", "upload apps/<sha256 hex>.tar.gz"),
    ("apps/../keys/signing.key", b"x", "upload apps/<sha256 hex>.tar.gz"),
    ("apps/" + "0" * 64 + ".sig", b"x" * 5000, "at most 4096 bytes"),
])
def test_uploads_that_do_not_match_their_name_are_refused(make_site: SiteFactory, name: str,
                                                          data: bytes, message: str) -> None:
    site = make_site(allow_code_upload=True)
    with pytest.raises(ValidationError, match=message.replace("<", ".").replace(">", ".")):
        store_upload(site, name, data)
    assert not list((site.code).rglob("apps/*"))


def test_through_the_agent_upload_permission_approval_tamper_and_context(  # type: ignore[no-untyped-def]
        make_site: SiteFactory, start_agent, caller, tmp_path: Path) -> None:
    closed = make_site("site1")
    site = make_site("site2", allow_code_upload=True, node_config={"partition-id": 1})
    archive = pack_app(_app(tmp_path / "app"))

    # A site that did not allow uploads: the role may not place code at all.
    session = start_agent(closed).client().assume_role(caller, closed.launch_role_arn(), "fl")
    with pytest.raises(AccessDenied, match="not authorized to perform code:PutCode"):
        session.put_code(archive.store_name, archive.data)
    assert not (closed.code / "apps").exists()

    session = start_agent(site).client().assume_role(caller, site.launch_role_arn(), "fl")
    assert session.put_code(archive.store_name, archive.data) == {
        "Location": archive.store_name, "Digest": f"sha256:{archive.digest}",
        "Size": len(archive.data), "Approved": False}
    run_config = {"lr": 0.5, "epochs": 2, "name": "x", "fast": True}
    hyperparameters = {"lr": "0.5", "fedsilo_run_config": json.dumps(run_config),
                       "fedsilo_run_id": "run-7"}
    request = job_request("job-1", program="client.py", source=archive.store_name,
                          role=site.execution_role_arn(), hyperparameters=hyperparameters)
    with pytest.raises(AccessDenied, match="is not approved at site site2"):
        session.create_training_job(request)
    assert session.list_training_jobs() == {"TrainingJobSummaries": []}  # nothing was made

    approve_app(site, archive.digest)
    session.create_training_job(request)
    ended = wait_for(lambda: (d := session.describe_training_job("job-1"))["TrainingJobStatus"]
                     in ("Completed", "Failed") and d, what="job-1 to end")
    assert ended["TrainingJobStatus"] == "Completed", ended
    seen = json.loads((site.jobs / "job-1" / "model" / "seen.json").read_text())
    assert seen["argv"] == ["--lr", "0.5"]  # framework keys are not the program's options
    context = seen["context"]
    assert context["run_id"] == "run-7" and context["run_config"] == run_config
    node = context["node_config"]
    assert node["site-name"] == "site2" and node["partition-id"] == 1
    assert node["channel-train"] == str((site.channels / "train").resolve())
    assert node["model-dir"] == str(site.jobs / "job-1" / "model")

    stored = site.code / app_store_name(archive.digest)
    stored.write_bytes(stored.read_bytes()[:-1] + bytes([stored.read_bytes()[-1] ^ 0xFF]))
    with pytest.raises(ValidationError, match="was altered"):
        session.create_training_job({**request, "TrainingJobName": "job-2"})
    assert [j["TrainingJobName"] for j in session.list_training_jobs()["TrainingJobSummaries"]] \
        == ["job-1"]
