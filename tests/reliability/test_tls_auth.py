"""TLS, mutual TLS and the allowlist of enrolled clients, over real gRPC on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest

import fedsilo as fl
from fedsilo.server.grpc.auth import ClientAllowlist, public_key_fingerprint
from fedsilo.server.grpc.server import start_grpc_server
from tests.conftest import free_port
from tests.reliability.peers import (
    Honest,
    RawPeer,
    RecordingClientManager,
    RecordingStrategy,
    ServerThread,
    expected_fedavg,
    start_client_thread,
)
from tests.reliability.tls_material import (
    Identity,
    TlsMaterial,
    make_material,
    self_signed_client,
)

pytestmark = pytest.mark.timeout(60)


def test_a_federation_over_tls_with_enrolled_clients_gives_fedavg() -> None:
    material = make_material()
    site_a, site_b = material.client("site-a"), self_signed_client("site-b")
    allowlist = ClientAllowlist.from_pem([site_a.certificate, site_b.certificate])
    address = f"127.0.0.1:{free_port()}"
    clients = [Honest(1.0, 10), Honest(3.0, 30)]
    strategy = RecordingStrategy(2)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=2, round_timeout=20),
                          certificates=material.server_certificates, client_allowlist=allowlist)
    errors: list[BaseException] = []
    threads = [start_client_thread(address, client, errors,
                                   root_certificates=material.ca.certificate_pem,
                                   client_certificate=identity.pair, max_wait_time=20)
               for client, identity in zip(clients, (site_a, site_b), strict=True)]
    server.join(40)
    for thread in threads:
        thread.join(10)
    assert not errors
    assert strategy.failures == {1: [], 2: []}
    for got, want in zip(strategy.aggregated[2], expected_fedavg(clients, 2), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@dataclass
class Guarded:
    address: str
    material: TlsMaterial
    manager: RecordingClientManager
    enrolled: Identity


@pytest.fixture
def guarded_server() -> Iterator[Guarded]:
    """A TLS server that admits one enrolled client."""
    material = make_material()
    enrolled = material.client("enrolled")
    manager = RecordingClientManager()
    server, port = start_grpc_server(
        client_manager=manager, server_address="127.0.0.1:0",
        certificates=material.server_certificates,
        client_allowlist=ClientAllowlist.from_pem([enrolled.certificate]))
    yield Guarded(f"127.0.0.1:{port}", material, manager, enrolled)
    server.stop(None)


def credentials(material: TlsMaterial, identity: Identity | None) -> grpc.ChannelCredentials:
    chain, key = identity.pair if identity is not None else (None, None)
    return grpc.ssl_channel_credentials(material.ca.certificate_pem, private_key=key,
                                        certificate_chain=chain)


def test_an_unenrolled_client_is_refused_before_any_instruction(guarded_server: Guarded) -> None:
    g = guarded_server
    address, material, manager, enrolled = g.address, g.material, g.manager, g.enrolled
    stranger = material.client("stranger")  # signed by the same CA, but not enrolled
    peer = RawPeer(address, credentials(material, stranger))
    with pytest.raises(grpc.RpcError) as caught:
        peer.receive()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert public_key_fingerprint(stranger.certificate) in caught.value.details()
    assert "not enrolled" in caught.value.details()
    assert manager.registered == []
    peer.close()

    admitted = RawPeer(address, credentials(material, enrolled))
    assert manager.wait_for(1, timeout=10)
    assert len(manager.registered) == 1
    admitted.close()


def test_start_client_reports_the_refusal_as_a_permission_error(guarded_server: Guarded) -> None:
    g = guarded_server
    address, material, manager = g.address, g.material, g.manager
    stranger = material.client("stranger")
    with pytest.raises(PermissionError, match="refused this client.*not enrolled"):
        fl.client.start_numpy_client(
            server_address=address, client=Honest(1.0, 1),
            root_certificates=material.ca.certificate_pem, client_certificate=stranger.pair,
            max_wait_time=5)
    assert manager.registered == []


def test_a_client_without_a_certificate_fails_the_handshake(guarded_server: Guarded) -> None:
    g = guarded_server
    address, material, manager = g.address, g.material, g.manager
    peer = RawPeer(address, credentials(material, None), wait_for_ready=False)
    with pytest.raises(grpc.RpcError) as caught:
        peer.receive()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert manager.registered == []
    peer.close()


def test_a_plain_text_client_is_refused_when_tls_is_on(guarded_server: Guarded) -> None:
    address, manager = guarded_server.address, guarded_server.manager
    with pytest.raises(ConnectionError, match="could not reach the server"):
        fl.client.start_numpy_client(server_address=address, client=Honest(1.0, 1),
                                     insecure=True, max_wait_time=2)
    assert manager.registered == []


def test_a_client_that_does_not_trust_the_server_certificate_does_not_connect() -> None:
    material, other = make_material("real"), make_material("impostor")
    manager = RecordingClientManager()
    server, port = start_grpc_server(client_manager=manager, server_address="127.0.0.1:0",
                                     certificates=other.server_certificates)
    try:
        with pytest.raises(ConnectionError):
            fl.client.start_numpy_client(
                server_address=f"127.0.0.1:{port}", client=Honest(1.0, 1),
                root_certificates=material.ca.certificate_pem, max_wait_time=2)
        assert manager.registered == []
    finally:
        server.stop(None)


def test_server_only_tls_admits_clients_without_certificates() -> None:
    material = make_material()
    manager = RecordingClientManager()
    server, port = start_grpc_server(client_manager=manager, server_address="127.0.0.1:0",
                                     certificates=material.server_certificates)
    try:
        peer = RawPeer(f"127.0.0.1:{port}", credentials(material, None))
        assert manager.wait_for(1, timeout=10)
        peer.close()
    finally:
        server.stop(None)


def test_mutual_tls_without_an_allowlist_admits_any_client_the_ca_signed() -> None:
    material = make_material()
    manager = RecordingClientManager()
    server, port = start_grpc_server(client_manager=manager, server_address="127.0.0.1:0",
                                     certificates=material.server_certificates,
                                     require_client_certificate=True)
    try:
        unsigned = RawPeer(f"127.0.0.1:{port}", credentials(material, self_signed_client("x")),
                           wait_for_ready=False)
        with pytest.raises(grpc.RpcError):
            unsigned.receive()
        unsigned.close()
        signed = RawPeer(f"127.0.0.1:{port}", credentials(material, material.client("any")))
        assert manager.wait_for(1, timeout=10) and len(manager.registered) == 1
        signed.close()
    finally:
        server.stop(None)


def test_an_allowlist_without_tls_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="over TLS"):
        start_grpc_server(client_manager=RecordingClientManager(), server_address="127.0.0.1:0",
                          client_allowlist=ClientAllowlist([]))


def test_allowlist_entries_may_be_public_keys_or_certificates() -> None:
    material = make_material()
    site = material.client("site")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public_pem = x509.load_pem_x509_certificate(site.certificate).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    by_key = ClientAllowlist.from_pem([public_pem])
    assert by_key.admits(site.certificate) == (True, "")
    admitted, reason = by_key.admits(material.client("other").certificate)
    assert not admitted and "not enrolled" in reason
    with pytest.raises(ValueError, match="PEM certificate or a PEM public key"):
        ClientAllowlist.from_pem([b"not a pem"])
