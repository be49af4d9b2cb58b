"""Chunk frames the server never asked for, or far larger than asked, are refused at once.

A raw peer announces 8 GiB of tensors in chunk frames and keeps sending 4 MiB frames: before
any instruction (unasked, over plain text and as an enrolled client under mutual TLS), and as
its answer to a FitIns whose parameters hold a few hundred bytes. The server must refuse the
first frame, so its memory (measured in its own process) stays flat while the peer pushes,
and the honest clients' rounds must give exactly the FedAvg of their own updates.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
import pytest

import fedsilo as fl
from fedsilo.common import FitIns, chunking, serde
from tests.conftest import free_port
from tests.interop.harness import Process, ProcessGroup, accepts_connections, wait_until
from tests.reliability import frame_schema
from tests.reliability.peers import JOIN, Honest, expected_fedavg, start_client_thread
from tests.reliability.processes import HERE, environ
from tests.reliability.tls_material import make_material

pytestmark = pytest.mark.timeout(120)

ANNOUNCED = 8 * 2**30  # what the flood's first frame says is coming
FRAME = 4 * 2**20  # tensor bytes per frame
PUSHED = 256 * 2**20  # what the flood tries to push, at most (buffered, RSS would grow by it)
GROWTH_LIMIT = 50 * 2**20
FLOOD_SERVER = HERE / "flood_server.py"


class ChunkFlood:
    """A raw gRPC peer whose stream carries chunk frames announcing ``ANNOUNCED`` bytes.

    Frames are made as gRPC asks for them, so the peer itself holds only the frames gRPC's
    flow control lets through. With ``after_fit`` the frames are the answer to the first
    FitIns the peer receives; without it they go out as soon as the stream opens.
    """

    def __init__(self, address: str, *, after_fit: bool,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        self.channel = (grpc.secure_channel(address, credentials) if credentials is not None
                        else grpc.insecure_channel(address))
        self.after_fit = after_fit
        self.asked = threading.Event()
        self.sent = 0  # tensor bytes the server took off the stream (as far as gRPC let go)
        self.ended: grpc.RpcError | None = None
        join = self.channel.stream_stream(JOIN, request_serializer=None,
                                          response_deserializer=None)
        # The peer says it reads chunks, as a fedsilo client would: then nothing but the
        # instruction's own size bounds what it may send.
        self.responses = join(self._frames(), metadata=chunking.announce(2**30),
                              wait_for_ready=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _frames(self) -> Iterator[bytes]:
        if self.after_fit:
            self.asked.wait()
        count = ANNOUNCED // FRAME
        head = serde.client_message_to_bytes(
            fl.common.FitRes(fl.common.Status(fl.common.Code.OK, ""),
                             fl.common.Parameters([], "numpy.ndarray"), 10, {}))
        first = frame_schema.Chunk(transfer=1, index=0, count=count, head=head,
                                   sizes=[ANNOUNCED], data=b"\x00" * FRAME)
        yield frame_schema.Frame(chunk=first).SerializeToString()
        self.sent += FRAME
        index = 1
        while self.sent < PUSHED and self.ended is None:
            chunk = frame_schema.Chunk(transfer=1, index=index, data=b"\x00" * FRAME)
            yield frame_schema.Frame(chunk=chunk).SerializeToString()
            self.sent += FRAME
            index += 1

    def _read(self) -> None:
        try:
            for data in self.responses:
                if isinstance(serde.server_message_from_bytes(data), FitIns):
                    self.asked.set()
        except grpc.RpcError as exc:
            self.ended = exc

    def close(self) -> None:
        self.responses.cancel()
        self.channel.close()


class PeakRss:
    """A process's peak resident memory above its level at the start of the block."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(psutil.Error):  # the server finished its run
                self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class ServerProcess:
    """``flood_server.py`` in its own process: the server whose memory is measured."""

    address: str
    process: Process
    result_path: Path

    def result(self, group: ProcessGroup) -> dict[str, Any]:
        assert group.wait_all(90) == {"server": 0}, group.report()
        return json.loads(self.result_path.read_text())  # type: ignore[no-any-return]

    def refusals(self) -> list[str]:
        return [line for line in self.process.output().splitlines()
                if "its stream is closed" in line]


def start_server(group: ProcessGroup, tmp_path: Path, *options: str) -> ServerProcess:
    port = free_port()
    result = tmp_path / "result.json"
    process = group.start("server", [sys.executable, str(FLOOD_SERVER), str(port), str(result),
                                     *options], environ())
    wait_until(lambda: accepts_connections(port) or not process.running(), 60,
               "the server listening")
    assert process.running(), group.report()
    return ServerProcess(f"127.0.0.1:{port}", process, result)


def run_honest(address: str, clients: list[Honest],
               client_kwargs: list[dict[str, Any]] | None = None) -> None:
    """Run ``clients`` (with their own keyword arguments) until the server lets them go."""
    errors: list[BaseException] = []
    threads = [start_client_thread(address, client, errors, max_wait_time=30, **kwargs)
               for client, kwargs in zip(clients, client_kwargs or [{}] * len(clients),
                                         strict=True)]
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert not errors


def assert_exact(aggregated: list[list[float]], clients: list[Honest], rounds: int) -> None:
    for got, want in zip(aggregated, expected_fedavg(clients, rounds), strict=True):
        np.testing.assert_array_equal(np.array(got), want)


def write_tls(directory: Path) -> tuple[grpc.ChannelCredentials, list[dict[str, Any]]]:
    """Mutual TLS material for the server in ``directory``, with three enrolled clients:
    the flooding peer's credentials and the honest clients' keyword arguments."""
    material = make_material()
    flooder, site_a, site_b = (material.client(n) for n in ("flooder", "site-a", "site-b"))
    directory.mkdir()
    ca, cert, key = material.server_certificates
    for name, data in (("ca.pem", ca), ("server.pem", cert), ("server.key", key)):
        (directory / name).write_bytes(data)
    for name, identity in (("flooder", flooder), ("site-a", site_a), ("site-b", site_b)):
        (directory / f"enrolled-{name}.pem").write_bytes(identity.certificate)
    credentials = grpc.ssl_channel_credentials(ca, private_key=flooder.key,
                                               certificate_chain=flooder.certificate)
    honest = [{"root_certificates": ca, "client_certificate": identity.pair}
              for identity in (site_a, site_b)]
    return credentials, honest


@pytest.mark.parametrize("transport", ["plain text", "mutual TLS, enrolled"])
def test_unasked_chunk_frames_are_refused_at_the_first_frame(transport: str,
                                                             tmp_path: Path) -> None:
    peer_credentials = None
    honest_tls: list[dict[str, Any]] = [{}, {}]
    options: list[str] = []
    if transport != "plain text":
        peer_credentials, honest_tls = write_tls(tmp_path / "tls")
        options = ["--tls", str(tmp_path / "tls")]
    with ProcessGroup(tmp_path) as group:
        server = start_server(group, tmp_path, *options)
        with PeakRss(server.process.popen.pid) as rss:
            flood = ChunkFlood(server.address, after_fit=False, credentials=peer_credentials)
            flood.reader.join(30)
        assert isinstance(flood.ended, grpc.RpcError), "the server kept reading the flood"
        assert flood.ended.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no instruction was waiting" in flood.ended.details()
        print(f"{transport}: server RSS grew by {rss.growth / 2**20:.1f} MB while the peer "
              f"got {flood.sent / 2**20:.0f} MiB out")
        assert rss.growth < GROWTH_LIMIT, f"server RSS grew by {rss.growth / 2**20:.0f} MB"
        assert flood.sent < PUSHED  # refused before the peer got through what it meant to push
        flood.close()

        clients = [Honest(1.0, 10), Honest(3.0, 30)]
        run_honest(server.address, clients, honest_tls)
        result = server.result(group)
        # Logged once for the stream, not once per frame.
        assert len(server.refusals()) == 1, group.report()
        assert "chunk frames" in server.refusals()[0]
    assert result["failures"] == {"1": [], "2": []}
    assert_exact(result["aggregated"], clients, 2)


def test_a_fit_answer_announcing_far_more_than_the_model_is_refused_at_its_first_frame(
    tmp_path: Path,
) -> None:
    clients = [Honest(1.0, 10), Honest(3.0, 30)]
    with ProcessGroup(tmp_path) as group:
        server = start_server(group, tmp_path, "--first", "3")  # round 1 samples the peer too
        with PeakRss(server.process.popen.pid) as rss:
            flood = ChunkFlood(server.address, after_fit=True)
            run_honest(server.address, clients)
            result = server.result(group)
        flood.reader.join(30)
    assert flood.asked.is_set()
    assert isinstance(flood.ended, grpc.RpcError), "the server kept reading the flood"
    assert "refused a chunked reply at its first frame" in flood.ended.details()
    print(f"fit answer: server RSS grew by {rss.growth / 2**20:.1f} MB")
    assert rss.growth < GROWTH_LIMIT, f"server RSS grew by {rss.growth / 2**20:.0f} MB"
    flood.close()
    assert result["results"] == {"1": 2, "2": 2}
    (failure,) = result["failures"]["1"]
    # The model sent holds two small float64 tensors: the reply may hold twice their bytes.
    assert f"announced {ANNOUNCED} bytes of tensors" in failure
    assert result["failures"]["2"] == []
    assert_exact(result["aggregated"], clients, 2)
