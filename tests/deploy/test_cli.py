"""The site and certs commands, run through the ``fedsilo`` Typer application."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsilo.cli.main import app
from fedsilo.deploy.federation_config import load_federation_config
from fedsilo.deploy.identity import Identity, fingerprint, load_public_key
from fedsilo.deploy.site import SiteLayout, trusted_principals

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_certs_then_a_site_that_trusts_the_orchestrator(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    _ok("certs", "init", str(certs), "--host", "127.0.0.1", "--host", "fl.example.org")
    out = _ok("certs", "client", str(certs), "orchestrator")
    cert = certs / "orchestrator.pem"
    key_fp = fingerprint(load_public_key(cert.read_bytes()))
    assert key_fp in out
    assert _ok("certs", "fingerprint", str(cert)).strip() == key_fp
    Identity.load(certs / "orchestrator.key", cert)  # the pair matches
    assert (certs / "orchestrator.key").stat().st_mode & 0o077 == 0

    site_dir = tmp_path / "site1"
    _ok("site", "init", str(site_dir), "--name", "site1", "--trust-key", str(cert),
        "--port", "9443")
    site = SiteLayout(site_dir)
    assert site.config()["port"] == 9443
    assert trusted_principals(site) == {"Key": [key_fp]}
    for sub in ("channels", "code", "artifacts", "jobs"):
        assert (site_dir / sub).is_dir()
    assert (site.signing_key_path.stat().st_mode & 0o077) == 0

    other = tmp_path / "other.pem"
    _ok("certs", "client", str(certs), "other")
    _ok("site", "trust", str(site_dir), "--cert", str(certs / "other.pem"))
    assert len(trusted_principals(site)["Certificate"]) == 1
    del other

    data = tmp_path / "rows"
    data.mkdir()
    (data / "train.csv").write_text("a\n1\n")
    _ok("site", "add-channel", str(site_dir), "train", str(data))
    assert (site.channels / "train" / "train.csv").read_text() == "a\n1\n"
    _ok("app", "new", str(tmp_path / "fraud-app"), "--example", "fraud")
    _ok("site", "add-code", str(site_dir), str(tmp_path / "fraud-app"),
        "--name", "fraud/source.tar.gz")
    with tarfile.open(site.code / "fraud" / "source.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["client.py", "requirements.txt", "server.py",
                                          "utils.py"]

    spec = json.loads(_ok("site", "openapi", str(site_dir)))
    assert "/jobs/{job}" in spec["paths"] and spec["info"]["title"].endswith("(site1)")


def test_bad_input_is_refused_with_a_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["site", "init", str(tmp_path / "s"), "--name", "Bad_Name"])
    assert result.exit_code != 0 and "site name" in result.output
    _ok("site", "init", str(tmp_path / "s"), "--name", "ok")
    result = runner.invoke(app, ["site", "init", str(tmp_path / "s"), "--name", "ok"])
    assert result.exit_code != 0 and "already a site" in result.output
    result = runner.invoke(app, ["site", "add-channel", str(tmp_path / "s"), "../x",
                                 str(tmp_path)])
    assert result.exit_code != 0


def test_the_shipped_example_federation_file_reads(tmp_path: Path) -> None:
    import fedsilo.examples.fraud as fraud

    config = load_federation_config(Path(fraud.__file__).parent / "federation.toml")
    assert [s.name for s in config.sites] == ["site1", "site2", "site3"]
    assert config.required_sites == 3 and config.app.server == "server:server_fn"
    assert config.app.run_config == {"penalty": "l2", "max-iter": 10, "num-server-rounds": 5}
    assert (config.app.directory / config.app.program).is_file()
    assert config.identity_certificate is not None


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "federation.toml"
    path.write_text(text)
    return path


SITE = """
[[sites]]
name = "{name}"
endpoint = "https://127.0.0.1:1"
ca = "ca.pem"
role = "r"
execution_role = "e"
source = "s.tar.gz"
{extra}
"""
HEAD = """
[app]
dir = "app"
server = "server:server_fn"
[server]
certificates = "certs"
{server}
[identity]
key = "k"
"""


@pytest.mark.parametrize(("text", "message"), [
    ("[app]\ndir = 'x'\nserver = 'm:f'\n", "needs a [server] table"),
    ("[evaluation]\ntest_data = 'x'\n", "name the app to run in an [app] table"),
    (HEAD.format(server="").replace("server:server_fn", "server")
     + SITE.format(name="a", extra=""),
     "'module:function'"),
    (HEAD.format(server=""), "at least one [[sites]]"),
    (HEAD.format(server="rounds = 0") + SITE.format(name="a", extra=""), "rounds"),
    (HEAD.format(server="") + "[strategy]\nmin_sites = 3\n" + SITE.format(name="a", extra=""),
     "min_sites"),
    (HEAD.format(server="") + SITE.format(name="a", extra="launcher = 'ssh'"), "launcher"),
    (HEAD.format(server="") + SITE.format(name="a", extra="") + SITE.format(name="a", extra=""),
     "unique"),
    (HEAD.format(server="") + SITE.format(name="a", extra="client_certificate = 'c.pem'")
     + SITE.format(name="b", extra=""), "mutual TLS needs one for every site"),
])
def test_federate_refuses_a_bad_file_with_the_key_to_fix(tmp_path: Path, text: str,
                                                         message: str) -> None:
    result = runner.invoke(app, ["federate", str(_toml(tmp_path, text))])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split()), result.output


def test_app_and_approval_commands(tmp_path: Path) -> None:
    from fedsilo.deploy.app_archive import pack_app
    from fedsilo.deploy.identity import generate_signing_key, private_key_pem, public_key_pem
    from fedsilo.deploy.site import policy_allows

    app_dir = tmp_path / "my-app"
    _ok("app", "new", str(app_dir), "--example", "mlp")
    assert sorted(p.name for p in app_dir.iterdir()) == ["client.py", "requirements.txt",
                                                          "server.py", "task.py"]
    digest = pack_app(app_dir).digest
    out = _ok("app", "pack", str(app_dir), "--output", str(tmp_path / "my-app.tar.gz"))
    assert out.split()[0] == f"sha256:{digest}"
    assert (tmp_path / "my-app.tar.gz").read_bytes() == pack_app(app_dir).data

    site_dir = tmp_path / "site1"
    _ok("site", "init", str(site_dir), "--name", "site1", "--allow-code-upload",
        "--node-config", "partition-id=0", "--node-config", "region=east")
    site = SiteLayout(site_dir)
    assert site.config()["node_config"] == {"partition-id": 0, "region": "east"}
    assert policy_allows(site, "UploadApps")
    assert not policy_allows(SiteLayout(_site_without_upload(tmp_path)), "UploadApps")
    # The same app approved three ways is one entry: by directory, archive or digest.
    for given in (str(app_dir), str(tmp_path / "my-app.tar.gz"), digest):
        assert f"approved sha256:{digest}" in _ok("site", "approve", str(site_dir), given)
    policy = json.loads((site_dir / "policy" / "apps.json").read_text())
    assert policy["Approved"] == [f"sha256:{digest}"]

    key = generate_signing_key()
    (tmp_path / "publisher.key").write_bytes(private_key_pem(key))
    (tmp_path / "publisher.pem").write_bytes(public_key_pem(key.public_key()))
    _ok("site", "approve", str(site_dir), "--signer", str(tmp_path / "publisher.pem"))
    assert f"signed sha256:{digest}" in _ok("app", "sign", str(app_dir), "--key",
                                            str(tmp_path / "publisher.key"), "--output",
                                            str(tmp_path / "app.sig"))
    assert len(json.loads((site_dir / "policy" / "apps.json").read_text())
               ["TrustedSigners"]) == 1


def _site_without_upload(tmp_path: Path) -> Path:
    _ok("site", "init", str(tmp_path / "closed"), "--name", "closed")
    return tmp_path / "closed"
