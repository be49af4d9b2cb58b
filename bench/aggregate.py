"""FedAvg aggregation: throughput against memory bandwidth and Flower, and a round's peak memory.

    python bench/aggregate.py                         # 20 updates x 5M float32; round 50 x 10M
    python bench/aggregate.py --updates 10 --params 1000000 --round 10x1M
    python bench/aggregate.py --round none --baseline HEAD~1   # also fedsilo as of a commit

1. Memory bandwidth: a numpy copy of a 256 MiB buffer, in this run (GB/s copied).
2. Throughput: N client updates of P float32 parameters, already serialized as they arrive
   from the wire, aggregated by FedAvg: fedsilo (all results at once through aggregate_fit,
   and streamed through the accumulator the server uses) and the newest Flower (its default
   in-place aggregate, and its plain ``aggregate``), each in its own process and venv on the
   same seeded inputs. GB/s counts the N * P * 4 bytes of updates; the results are checked
   to agree. With ``--baseline REF``, fedsilo as of git commit REF (its ``src`` exported to
   a temporary directory) is timed in the same run, and the ratios say how the checked-out
   code compares with it.
3. Peak memory of a server in a real round: one server process and N client processes on
   127.0.0.1 (bench/_peers.py), fedsilo's server against Flower's, peak RSS from the
   server process. The streaming round should hold about one model, Flower's all N.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).with_name("_peers.py")
sys.path.insert(0, str(REPO))

from tests.interop.flower_envs import FLWR_NEWEST_PLAIN, ensure_flower_env  # noqa: E402


def copy_bandwidth(n_bytes: int = 256 << 20, repeat: int = 5) -> float:
    """GB/s of ``np.copyto`` between two large float32 buffers (best of ``repeat``)."""
    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeat))
    return n_bytes / best / 1e9


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(impl: str, n_updates: int, n_params: int, seed: int, repeat: int) -> dict[str, Any]:
    """Run in the implementation's own venv: time its FedAvg on seeded serialized updates."""
    if impl == "fedsilo":
        import fedsilo as fl
    else:
        import logging

        import flwr as fl  # type: ignore[no-redef]

        logging.getLogger("flwr").setLevel(logging.ERROR)
    common = fl.common
    rng = np.random.default_rng(seed)
    results = []
    for k in range(n_updates):
        arrays = [rng.standard_normal(n_params, dtype=np.float32)]
        res = common.FitRes(status=common.Status(code=common.Code.OK, message=""),
                            parameters=common.ndarrays_to_parameters(arrays),
                            num_examples=k + 1, metrics={})
        results.append((None, res))
    variants: dict[str, Any] = {}
    if impl == "fedsilo":
        def batch() -> Any:
            return fl.server.strategy.FedAvg().aggregate_fit(1, results, [])[0]

        def streamed() -> Any:
            strategy = fl.server.strategy.FedAvg()
            accumulator = strategy.fit_accumulator(1, results[0][1].parameters)
            for client, res in results:
                accumulator.add(client, res, common.parameters_to_ndarrays(res.parameters))
            return accumulator.finish(results, [])[0]

        variants = {"fedsilo aggregate_fit (all results)": batch,
                    "fedsilo streaming accumulator": streamed}
    else:
        def inplace() -> Any:
            return fl.server.strategy.FedAvg(inplace=True).aggregate_fit(1, results, [])[0]

        def plain() -> Any:
            return fl.server.strategy.FedAvg(inplace=False).aggregate_fit(1, results, [])[0]

        variants = {"flwr FedAvg (inplace=True, default)": inplace,
                    "flwr FedAvg (inplace=False)": plain}
    out: dict[str, Any] = {"times": {}, "cpu_times": {}, "check": {}}
    for name, fn in variants.items():
        times, cpu_times = [], []
        for _ in range(repeat):
            started, cpu_started = time.perf_counter(), time.process_time()
            parameters = fn()
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        final = common.parameters_to_ndarrays(parameters)[0]
        out["times"][name] = min(times)
        out["cpu_times"][name] = min(cpu_times)
        out["check"][name] = [float(np.sum(final, dtype=np.float64))] + final[:4].tolist()
    return out


def strategy_memory(impl: str, n_updates: int, n_params: int, seed: int) -> float:
    """Peak bytes (tracemalloc) the aggregation side holds while N replies arrive one by one.

    Each reply is made as the transport would hand it over (serialized bytes). fedsilo's
    server folds it into the streaming accumulator and lets it go; Flower's server keeps
    every FitRes until aggregate_fit. Transport buffers are not part of this figure.
    """
    import tracemalloc

    fl: Any = __import__("fedsilo" if impl == "fedsilo" else "flwr")
    common = fl.common
    rng = np.random.default_rng(seed)
    first = [np.zeros(n_params, dtype=np.float32)]
    global_parameters = common.ndarrays_to_parameters(first)
    del first
    tracemalloc.start()
    strategy = fl.server.strategy.FedAvg()
    accumulator = strategy.fit_accumulator(1, global_parameters) if impl == "fedsilo" else None
    results = []
    for k in range(n_updates):
        update = rng.standard_normal(n_params, dtype=np.float32)
        res = common.FitRes(status=common.Status(code=common.Code.OK, message=""),
                            parameters=common.ndarrays_to_parameters([update]),
                            num_examples=k + 1, metrics={})
        del update
        if accumulator is not None:
            accumulator.add(None, res, common.parameters_to_ndarrays(res.parameters))
            res = common.FitRes(status=res.status,
                                parameters=common.Parameters(tensors=[], tensor_type=""),
                                num_examples=res.num_examples, metrics={})
        results.append((None, res))
    if accumulator is not None:
        accumulator.finish(results, [])
    else:
        strategy.aggregate_fit(1, results, [])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return float(peak)


def baseline_environ(ref: str, directory: Path) -> dict[str, str]:
    """An environment whose ``import fedsilo`` is fedsilo as of git commit ``ref``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    path = os.pathsep.join(p for p in (str(directory / "src"), os.environ.get("PYTHONPATH"))
                           if p)
    return {**os.environ, "PYTHONPATH": path}


def compare_with_baseline(args: argparse.Namespace, size_gb: float,
                          first: dict[str, Any]) -> None:
    """Time fedsilo now and as of ``args.baseline`` in turns, ``args.pairs`` times each (a
    loaded machine's speed drifts; taking turns spreads the drift over both); the best
    time of each variant is compared, in wall-clock seconds and in the CPU seconds of the
    measuring process (which other processes on the machine disturb less)."""
    runs: dict[str, list[dict[str, Any]]] = {"now": [first], "then": []}
    with tempfile.TemporaryDirectory() as tmp:
        env = baseline_environ(args.baseline, Path(tmp))
        for turn in range(args.pairs):
            runs["then"].append(run_measure(sys.executable, "fedsilo", args, env))
            if turn > 0:  # the main measurement is the first turn of the current code
                runs["now"].append(run_measure(sys.executable, "fedsilo", args, None))
    print(f"\nfedsilo now against itself as of {args.baseline}, {args.pairs} runs each in "
          "turns, best of each (> 1: faster now)")
    for name in first["times"]:
        best = {when: (min(r["times"][name] for r in measured),
                       min(r["cpu_times"][name] for r in measured))
                for when, measured in runs.items()}
        (wall_then, cpu_then), (wall_now, cpu_now) = best["then"], best["now"]
        print(f"  {name:<38} wall {size_gb / wall_then:>6.2f} GB/s then, "
              f"{size_gb / wall_now:>6.2f} now: {wall_then / wall_now:.2f}x; "
              f"CPU {cpu_then:.3f} s then, {cpu_now:.3f} now: {cpu_then / cpu_now:.2f}x")


def run_measure(python: str, impl: str, args: argparse.Namespace, env: dict[str, str] | None
                ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        subprocess.run([python, __file__, "measure", impl, str(args.updates), str(args.params),
                        str(args.seed), str(args.repeat), str(out)], check=True, env=env,
                       timeout=1800)
        return json.loads(out.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def round_peak_memory(python: str, impl: str, n_clients: int, n_params: int,
                      env: dict[str, str] | None) -> float:
    """Peak RSS (MB) of a server process through one fit round with ``n_clients``."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "server.json")
        server = subprocess.Popen([python, str(PEERS), "server", impl, str(port), str(n_clients),
                                   str(n_params), "1", out], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        clients = [subprocess.Popen([python, str(PEERS), "client", impl, str(port), str(i), "1"],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for i in range(n_clients)]
        try:
            # VmHWM is the process's own high-water mark (ru_maxrss would carry this
            # process's peak over the fork); it only grows, so the last read is the peak.
            peak_kb = 0
            while server.poll() is None:
                peak_kb = max(peak_kb, _vm_hwm_kb(server.pid))
                time.sleep(0.05)
            err = server.stderr.read() if server.stderr else b""
            if server.returncode != 0:
                raise RuntimeError(f"{impl} server failed:\n{err.decode()[-3000:]}")
            json.loads(Path(out).read_text())  # the round completed
            return peak_kb / 1024
        finally:
            for client in clients:
                try:
                    client.wait(60)
                except subprocess.TimeoutExpired:
                    client.kill()


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=20, help="N updates (default 20)")
    parser.add_argument("--params", type=int, default=5_000_000, help="P float32 (default 5M)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--round", default="50x10M",
                        help="clients x params of the memory round, e.g. 50x10M, 10x1M; "
                             "'none' to skip")
    parser.add_argument("--baseline", metavar="REF",
                        help="also time fedsilo as of this git commit, in the same run")
    parser.add_argument("--pairs", type=int, default=3,
                        help="with --baseline: runs of each, in turns (default 3)")
    args = parser.parse_args()
    flower = ensure_flower_env(FLWR_NEWEST_PLAIN)
    flower_env = flower.environ()
    print(f"host: {os.cpu_count()} cores; Flower {flower.flwr_version}")
    if args.round != "none":
        clients, params = args.round.split("x")
        n_clients = int(clients)
        n_params = int(float(params[:-1]) * {"k": 1e3, "M": 1e6}[params[-1]]) \
            if params[-1] in "kM" else int(params)
        model_mb = n_params * 4 / 1e6
        print(f"server peak RSS in one real round: {n_clients} client processes x "
              f"{n_params:,} float32 ({model_mb:.0f} MB a model, "
              f"{n_clients * model_mb:.0f} MB of updates)")
        rss = {
            "fedsilo": round_peak_memory(sys.executable, "fedsilo", n_clients, n_params, None),
            "flwr": round_peak_memory(flower.python, "flwr", n_clients, n_params, flower_env),
        }
        for impl, mb in rss.items():
            print(f"  {impl:<8} {mb:>8.0f} MB  ({mb / model_mb:.1f} models)")
        print(f"  fedsilo / flwr = {rss['fedsilo'] / rss['flwr']:.2f}")
    # After the round: this process's own buffers must not inflate the servers' peaks.
    bandwidth = copy_bandwidth()
    print(f"\nmemory bandwidth (numpy copy of 256 MiB): {bandwidth:.2f} GB/s")
    size_gb = args.updates * args.params * 4 / 1e9
    print(f"FedAvg over N={args.updates} updates x P={args.params:,} float32 "
          f"({size_gb:.2f} GB of updates), best of {args.repeat}")
    ours = run_measure(sys.executable, "fedsilo", args, None)
    theirs = run_measure(flower.python, "flwr", args, flower_env)
    times = {**ours["times"], **theirs["times"]}
    checks = {**ours["check"], **theirs["check"]}
    reference = checks["flwr FedAvg (inplace=True, default)"]
    flwr_best = min(theirs["times"].values())
    print(f"{'variant':<40}{'seconds':>9}{'GB/s':>8}{'of copy bw':>12}{'vs flwr best':>14}")
    for name, seconds in times.items():
        rate = size_gb / seconds
        print(f"{name:<40}{seconds:>9.3f}{rate:>8.2f}{rate / bandwidth:>11.0%}"
              f"{flwr_best / seconds:>13.2f}x")
        agree = np.allclose(checks[name], reference, rtol=1e-4, atol=1e-3)
        if not agree:
            print(f"  !! {name} disagrees with Flower: {checks[name]} vs {reference}")
    if args.baseline:
        compare_with_baseline(args, size_gb, ours)

    model_bytes = args.params * 4
    print(f"\naggregation-side peak memory while the {args.updates} replies arrive one by one "
          "(tracemalloc; transport buffers excluded)")
    for impl, result in (("fedsilo streaming", ours), ("flwr", theirs)):
        held = result["strategy_peak_bytes"]
        print(f"  {impl:<18} {held / 1e6:>8.0f} MB  ({held / model_bytes:.1f} models)")
    print(f"  fedsilo / flwr = {ours['strategy_peak_bytes'] / theirs['strategy_peak_bytes']:.2f}")

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(this process peak RSS {peak_mb:.0f} MB)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        impl, n, p, seed, repeat, out = sys.argv[2:8]
        result = measure(impl, int(n), int(p), int(seed), int(repeat))
        result["strategy_peak_bytes"] = strategy_memory(impl, int(n), int(p), int(seed))
        Path(out).write_text(json.dumps(result))
    else:
        main()
