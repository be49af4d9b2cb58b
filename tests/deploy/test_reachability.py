"""A federation with remote (SageMaker) sites: an address they can dial, named in the
certificate, and timeouts sized for jobs that take minutes to start and to upload."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from fedsilo.cli.main import app
from fedsilo.deploy.certs import certificate_hosts
from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.federation_config import is_loopback, load_federation_config
from fedsilo.deploy.orchestrator import FederationError, _check_server_names

from .test_cli import HEAD

runner = CliRunner()

LOCAL_SITE = """
[[sites]]
name = "site1"
endpoint = "https://127.0.0.1:8441"
ca = "ca.pem"
role = "r"
execution_role = "e"
source = "fraud/source.tar.gz"
"""
SAGEMAKER_SITE = """
[[sites]]
name = "site3"
launcher = "sagemaker"
role = "arn:aws:iam::111122223333:role/FL-kickoff-client-job"
execution_role = "arn:aws:iam::111122223333:role/FL-execution-site3"
source = "s3://b/code/source.tar.gz"
"""


def _config(tmp_path: Path, server: str, *sites: str) -> Path:
    path = tmp_path / "federation.toml"
    path.write_text(HEAD.format(server=server) + "".join(sites))
    return path


@pytest.mark.parametrize(("server", "message"), [
    ('address = "0.0.0.0:8080"', "set server.public_address"),
    ('address = "0.0.0.0:8080"\npublic_address = "127.0.0.1:8080"', "loopback"),
    ('address = "0.0.0.0:8080"\npublic_address = "localhost:8080"', "loopback"),
    ('address = "0.0.0.0:8080"\npublic_address = "[::1]:8080"', "loopback"),
    ('address = "0.0.0.0:8080"\npublic_address = "0.0.0.0:8080"', "loopback"),
    ('address = "0.0.0.0:8080"\npublic_address = "fl.example.org"', "fixed port"),
    ('address = "0.0.0.0:0"\npublic_address = "fl.example.org:8080"', "not port 0"),
])
def test_remote_sites_need_an_address_they_can_dial(tmp_path: Path, server: str,
                                                    message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_federation_config(_config(tmp_path, server, LOCAL_SITE, SAGEMAKER_SITE))
    result = runner.invoke(app, ["federate", str(_config(tmp_path, server, SAGEMAKER_SITE))])
    assert result.exit_code == 1 and message in " ".join(result.output.split())


def test_timeouts_default_to_minutes_with_remote_sites_and_stay_short_without(
        tmp_path: Path) -> None:
    local = load_federation_config(_config(tmp_path, "", LOCAL_SITE))
    assert (local.connect_timeout, local.finish_timeout) == (60.0, 60.0)
    server = 'address = "0.0.0.0:8080"\npublic_address = "fl.example.org:8080"'
    mixed = load_federation_config(_config(tmp_path, server, LOCAL_SITE, SAGEMAKER_SITE))
    assert (mixed.connect_timeout, mixed.finish_timeout) == (900.0, 600.0)
    chosen = load_federation_config(_config(
        tmp_path, server + "\nconnect_timeout = 1800\nfinish_timeout = 300", SAGEMAKER_SITE))
    assert (chosen.connect_timeout, chosen.finish_timeout) == (1800.0, 300.0)


def test_loopback_names_and_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "LOCALHOST",
                                        "0.0.0.0"))
    assert not any(is_loopback(h) for h in ("10.0.0.5", "fl.example.org", "203.0.113.7"))


def test_the_public_address_must_be_in_the_server_certificate(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert runner.invoke(app, ["certs", "init", str(certs)]).exit_code == 0
    pem = (certs / "server.pem").read_bytes()
    with pytest.raises(FederationError, match="fedsilo certs server <certificates> --host "
                                              "fl.example.org"):
        _check_server_names(pem, "fl.example.org:8080")
    _check_server_names(pem, "127.0.0.1:8080")

    result = runner.invoke(app, ["certs", "server", str(certs), "--host", "fl.example.org",
                                 "--host", "10.0.0.5"])
    assert result.exit_code == 0, result.output
    reissued = (certs / "server.pem").read_bytes()
    assert certificate_hosts(x509.load_pem_x509_certificate(reissued)) == [
        "10.0.0.5", "fl.example.org"]
    _check_server_names(reissued, "fl.example.org:8080")
    _check_server_names(reissued, "10.0.0.5:8080")


def test_a_sagemaker_site_makes_its_own_client_certificate(tmp_path: Path) -> None:
    result = runner.invoke(app, ["certs", "self-signed", str(tmp_path / "identity"), "client"])
    assert result.exit_code == 0, result.output
    assert "key fingerprint  sha256:" in result.output
    certificate = x509.load_pem_x509_certificate((tmp_path / "identity" / "client.pem")
                                                 .read_bytes())
    assert certificate.issuer == certificate.subject  # no CA: enrolled by its key
    assert (tmp_path / "identity" / "client.key").stat().st_mode & 0o077 == 0


def test_managed_spot_must_wait_at_least_the_runtime(tmp_path: Path) -> None:
    server = 'address = "0.0.0.0:8080"\npublic_address = "fl.example.org:8080"'
    spot = SAGEMAKER_SITE + "spot = true\nmax_runtime = 3600\nmax_wait = 1800\n"
    with pytest.raises(ValidationError, match="max_wait .* at least max_runtime"):
        load_federation_config(_config(tmp_path, server, spot))
    spot = SAGEMAKER_SITE + ("spot = true\nmax_runtime = 3600\nmax_wait = 7200\n"
                             'checkpoint_uri = "s3://b/checkpoints/"\nvolume_size = 30\n')
    site = load_federation_config(_config(tmp_path, server, spot)).sites[0]
    assert (site.spot, site.max_wait, site.checkpoint_uri, site.volume_size) == (
        True, 7200, "s3://b/checkpoints/", 30)
