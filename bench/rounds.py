"""Round overhead and server memory: fedsilo's server against Flower's, in one run.

Every federation here is N client processes and one server process on 127.0.0.1, a model of P
float32 parameters, fit-only rounds in which each client returns the parameters it received.
For each setting the script runs fedsilo's server with fedsilo clients, the newest Flower and
Flower 1.3.0 (each in its own virtual environment) with their own clients, and fedsilo's server
with Flower clients. It also measures raw TCP throughput on loopback in the same run, and checks
that the aggregated parameters agree between the servers and with the closed form.

The "bare gRPC" row is the floor under every server here: the same messages moved by gRPC Python
alone, with an echo for a client and no protobuf, checks or aggregation (see _peers.py). fedsilo's
time over the floor's is what fedsilo itself adds; the floor's MB/s is the most any server built
on gRPC Python reaches on this machine.

    python bench/rounds.py                      # the three standard settings, 5 rounds each
    python bench/rounds.py --settings 10x1M --rounds 3 --markdown
    python bench/rounds.py --rounds 8 --repeat 3 --markdown   # the README's table

Per-round seconds are medians over the rounds after the first (which includes connecting),
pooled over the runs with --repeat (the server's peak RSS is then the highest of its runs);
"MB/s" is what the server moved per second (the broadcast to and the replies from all N
clients); "RSS" is the server's peak resident memory.

"CPU" is the processor time a round takes, in core-seconds (user and system, every thread): the
server's and all clients' together, over rounds 2 to the one before the last (from the server's
start of round 2 and each client's fit of round 2 to the same points of the last round).
The server and the clients share this machine's cores, so a round cannot take much less than that
CPU time divided by the number of cores ("CPU / cores"). The CPU figures are means over rounds and
the round times medians, so the two can differ by the rounds' spread. A federation whose rounds
take about its CPU / cores is bound by the machine's cores, not by waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).with_name("_peers.py")
sys.path.insert(0, str(REPO))

from fedsilo.common.chunking import PACED_FRAME  # noqa: E402  (the floor's frame size)
from tests.interop.flower_envs import FLWR_1_3, FLWR_NEWEST, ensure_flower_env  # noqa: E402

RUN_TIMEOUT_S = 900
SUFFIXES = {"k": 1_000, "M": 1_000_000}


@dataclass(frozen=True)
class Peer:
    """An implementation and the interpreter that has it installed."""

    label: str
    impl: str  # "fedsilo" or "flwr"
    python: str


@dataclass
class Outcome:
    runs: list[list[float]]  # the round seconds of each federation run
    peak_rss_mb: float
    final: np.ndarray
    cpu_server: list[float] = field(default_factory=list)  # CPU s per round, one per run
    cpu_clients: list[float] = field(default_factory=list)  # all clients', one per run

    @property
    def median(self) -> float:
        """Median round time over every run, each run's first round left out: it includes
        clients connecting."""
        steady = [s for rounds in self.runs for s in (rounds[1:] or rounds)]
        return statistics.median(steady)

    @property
    def cpu(self) -> tuple[float, float] | None:
        """Median CPU seconds per round over the runs: (server, all clients)."""
        if not self.cpu_server or not self.cpu_clients:
            return None
        return statistics.median(self.cpu_server), statistics.median(self.cpu_clients)

    def merged(self, other: Outcome) -> Outcome:
        """Both runs' rounds; the higher of the two peaks."""
        return Outcome(self.runs + other.runs, max(self.peak_rss_mb, other.peak_rss_mb),
                       other.final, self.cpu_server + other.cpu_server,
                       self.cpu_clients + other.cpu_clients)


def parse_setting(text: str) -> tuple[int, int]:
    """'10x1M' -> (10, 1_000_000)."""
    clients, params = text.split("x")
    scale = SUFFIXES.get(params[-1], 1)
    digits = params[:-1] if params[-1] in SUFFIXES else params
    return int(clients), int(float(digits) * scale)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server did not listen on port {port} within {timeout} s")


def run_federation(server: Peer, client: Peer, n_clients: int, n_params: int, rounds: int,
                   offset: bool, workdir: Path) -> Outcome:
    """One federation in fresh processes; returns the server's own measurements."""
    port = free_port()
    out = workdir / f"{server.label}-{client.label}-{n_clients}x{n_params}-{int(offset)}.json"
    env = dict(os.environ, PYTHONWARNINGS="ignore", GRPC_VERBOSITY="ERROR")
    server_proc = subprocess.Popen(
        [server.python, str(PEERS), "server", server.impl, str(port), str(n_clients),
         str(n_params), str(rounds), str(out)], env=env, stderr=subprocess.PIPE)
    clients: list[subprocess.Popen[bytes]] = []
    try:
        wait_listening(port, server_proc)
        clients = [subprocess.Popen(
            [client.python, str(PEERS), "client", client.impl, str(port), str(i),
             "1" if offset else "0", str(cpu_out(out, i))], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL) for i in range(n_clients)]
        _, err = server_proc.communicate(timeout=RUN_TIMEOUT_S)
        if server_proc.returncode != 0:
            raise RuntimeError(f"{server.label} server failed:\n{err.decode()[-3000:]}")
        for proc in clients:
            proc.wait(timeout=60)
    finally:
        for proc in [server_proc, *clients]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    measured = json.loads(out.read_text())
    outcome = Outcome([measured["round_seconds"]], measured["peak_rss_mb"],
                      np.load(str(out) + ".npy"))
    # the server's CPU at every round's start (its last mark, the end, is left out so that
    # its rounds are the clients' rounds)
    server_cpu = cpu_per_round(measured["cpu_marks"][:rounds], rounds)
    frames = -(-4 * n_params // PACED_FRAME) if client.impl == "grpc" else 1
    per_client = [cpu_per_round(read_cpu_marks(cpu_out(out, i))[::frames], rounds)
                  for i in range(n_clients)]
    if server_cpu is not None and None not in per_client:
        outcome.cpu_server.append(server_cpu)
        outcome.cpu_clients.append(sum(c for c in per_client if c is not None))
    return outcome


def cpu_out(out: Path, index: int) -> Path:
    return out.with_name(f"{out.stem}-client{index}-cpu.json")


def read_cpu_marks(path: Path) -> list[float]:
    """A client's CPU marks; none when it wrote none (it failed before it could): its CPU is
    then reported as not known."""
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def cpu_per_round(marks: list[float], expected: int) -> float | None:
    """CPU seconds per round from a process's CPU time at every round's start (``expected``
    marks): from the start of round 2 to the start of the last. The first round includes
    connecting and the first touch of memory."""
    if len(marks) != expected or expected < 3:
        return None
    return (marks[-1] - marks[1]) / (expected - 2)


def loopback_throughput(total_bytes: int = 4 << 30, chunk: int = 4 << 20) -> float:
    """Bytes per second one TCP connection on 127.0.0.1 carries, sender and receiver in two
    processes (the receiver is a child Python that reads and discards)."""
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", (
        "import socket,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1',{port})); s.listen(1); print('ready', flush=True)\n"
        "c,_=s.accept(); buf=bytearray(4<<20); view=memoryview(buf); n=0\n"
        "while True:\n"
        "    k=c.recv_into(view)\n"
        "    if not k: break\n"
        "    n+=k\n"
        "print(n, flush=True)\n")], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    receiver.stdout.readline()
    payload = memoryview(np.ones(chunk, dtype=np.uint8).tobytes())
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sent = 0
        while sent < total_bytes:
            sock.sendall(payload)
            sent += chunk
        sock.shutdown(socket.SHUT_WR)
        received = int(receiver.stdout.readline())
        elapsed = time.perf_counter() - started
    receiver.wait(timeout=30)
    if received != sent:
        raise RuntimeError(f"loopback test lost data: sent {sent}, received {received}")
    return sent / elapsed


def expected_after(rounds: int, n_clients: int, n_params: int) -> np.ndarray:
    """Closed form for offset clients: each round adds sum(w^2)/sum(w), w = 1..N."""
    weights = np.arange(1, n_clients + 1, dtype=np.float64)
    step = float((weights * weights).sum() / weights.sum())
    start = np.random.default_rng(7).standard_normal(n_params, dtype=np.float32)
    return start.astype(np.float64) + rounds * step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="10x1M,10x10M,50x100k",
                        help="comma-separated NxP, e.g. 10x1M (P accepts k and M)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every federation this many times, interleaved (A B C A B C), "
                             "and pool their rounds: steadier ratios on a noisy machine")
    parser.add_argument("--skip-flwr13", action="store_true", help="leave out Flower 1.3.0")
    parser.add_argument("--markdown", action="store_true", help="print a README table too")
    parser.add_argument("--json", type=Path, help="write all figures to this file")
    args = parser.parse_args(argv)

    newest = ensure_flower_env(FLWR_NEWEST)
    fedsilo = Peer("fedsilo", "fedsilo", sys.executable)
    flwr_newest = Peer(f"flwr {newest.flwr_version}", "flwr", newest.python)
    baselines = [flwr_newest]
    if not args.skip_flwr13:
        old = ensure_flower_env(FLWR_1_3)
        baselines.append(Peer(f"flwr {old.flwr_version}", "flwr", old.python))
    # (server, clients) pairs run for every setting
    pairs = [(fedsilo, fedsilo)] + [(b, b) for b in baselines]
    pairs += [(fedsilo, b) for b in baselines]
    floor = Peer("bare gRPC", "grpc", sys.executable)

    tcp = loopback_throughput()
    print(f"raw TCP on loopback: {tcp / 1e6:,.0f} MB/s")
    report: dict[str, object] = {"tcp_loopback_mb_s": tcp / 1e6, "settings": {}}

    with tempfile.TemporaryDirectory(prefix="fedsilo-rounds-") as tmp:
        workdir = Path(tmp)
        check_ok = correctness_check(pairs, workdir)  # the floor aggregates nothing
        report["aggregates_agree"] = check_ok
        rows: list[dict[str, object]] = []
        for setting in args.settings.split(","):
            n_clients, n_params = parse_setting(setting)
            moved_mb = 2 * n_clients * n_params * 4 / 1e6
            outcomes: dict[str, Outcome] = {}
            for repeat in range(args.repeat):
                for server, client in [*pairs, (floor, floor)]:
                    name = (server.label if server is client
                            else f"{server.label} + {client.label} clients")
                    result = run_federation(server, client, n_clients, n_params,
                                            args.rounds, False, workdir)
                    print(f"{setting:>8} {name:<36} median {result.median:7.3f} s/round  "
                          f"{moved_mb / result.median:8,.0f} MB/s  "
                          f"peak RSS {result.peak_rss_mb:7,.0f} MB  {describe_cpu(result)}  "
                          f"rounds {[round(s, 3) for s in result.runs[0]]}", flush=True)
                    outcomes[name] = (result if repeat == 0
                                      else outcomes[name].merged(result))
            if args.repeat > 1:
                for name, result in outcomes.items():
                    print(f"{setting:>8} {name:<36} median {result.median:7.3f} s/round over "
                          f"{args.repeat} runs, peak RSS {result.peak_rss_mb:,.0f} MB, "
                          f"{describe_cpu(result)}")
            ours = outcomes["fedsilo"]
            for name, result in outcomes.items():
                cpu = result.cpu
                rows.append({
                    "setting": setting, "server": name, "median_s": result.median,
                    "mb_per_s": moved_mb / result.median, "peak_rss_mb": result.peak_rss_mb,
                    "time_ratio": ours.median / result.median,
                    "rss_ratio": ours.peak_rss_mb / result.peak_rss_mb,
                    "tcp_fraction": (moved_mb / result.median) / (tcp / 1e6),
                    "cpu_server_s": cpu[0] if cpu else None,
                    "cpu_clients_s": cpu[1] if cpu else None,
                    "cpu_per_core_s": sum(cpu) / CORES if cpu else None,
                })
            for baseline in baselines:
                other = outcomes[baseline.label]
                print(f"{setting:>8} fedsilo / {baseline.label}: "
                      f"time x{ours.median / other.median:.2f}, "
                      f"peak RSS x{ours.peak_rss_mb / other.peak_rss_mb:.2f}")
            print(f"{setting:>8} fedsilo / bare gRPC floor: "
                  f"time x{ours.median / outcomes[floor.label].median:.2f}")
            print(f"{setting:>8} fedsilo moved {moved_mb / ours.median / (tcp / 1e6):.1%} of raw "
                  "TCP loopback throughput")
        report["rows"] = rows

    if args.markdown:
        print_markdown(rows, tcp)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if check_ok else 1


def correctness_check(pairs: list[tuple[Peer, Peer]], workdir: Path) -> bool:
    """Clients that add their weight: every server's final model equals the closed form."""
    n_clients, n_params, rounds = 5, 100_000, 3
    expected = expected_after(rounds, n_clients, n_params)
    agree = True
    for server, client in pairs:
        final = run_federation(server, client, n_clients, n_params, rounds, True, workdir).final
        error = float(np.max(np.abs(final.astype(np.float64) - expected)))
        ok = error < 1e-5 * max(1.0, float(np.max(np.abs(expected))))
        agree &= ok
        print(f"aggregate check, server {server.label}, clients {client.label}: max |error| "
              f"{error:.2e} {'ok' if ok else 'MISMATCH'}")
    return agree


CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe_cpu(result: Outcome) -> str:
    cpu = result.cpu
    if cpu is None:
        return "CPU n/a"
    return (f"CPU/round server {cpu[0]:.3f} + clients {cpu[1]:.3f} = {sum(cpu):.3f} core-s "
            f"(CPU / {CORES} cores {sum(cpu) / CORES:.3f} s)")


def print_markdown(rows: list[dict[str, object]], tcp: float) -> None:
    print(f"\nRaw TCP loopback in the same run: {tcp / 1e6:,.0f} MB/s; {CORES} cores\n")
    print("| setting | server (clients) | s/round (median) | MB/s | server peak RSS (MB) "
          "| fedsilo time / this | fedsilo RSS / this | CPU core-s/round: server + clients "
          f"| CPU / {CORES} cores (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        server_cpu, clients_cpu = row["cpu_server_s"], row["cpu_clients_s"]
        cpu = (f"{server_cpu:.3f} + {clients_cpu:.3f}"
               if isinstance(server_cpu, float) and isinstance(clients_cpu, float) else "n/a")
        limit = row["cpu_per_core_s"]
        print(f"| {row['setting']} | {row['server']} | {row['median_s']:.3f} | "
              f"{row['mb_per_s']:,.0f} | {row['peak_rss_mb']:,.0f} | "
              f"{row['time_ratio']:.2f} | {row['rss_ratio']:.2f} | {cpu} | "
              f"{f'{limit:.3f}' if isinstance(limit, float) else 'n/a'} |")


if __name__ == "__main__":
    raise SystemExit(main())
