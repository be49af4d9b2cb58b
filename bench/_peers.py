"""Server and client programs for the round benchmark, run as separate processes.

    python _peers.py server IMPL PORT N P ROUNDS OUT
    python _peers.py client IMPL PORT INDEX OFFSET [CPU_OUT]

IMPL is `fedsilo` or `flwr`: the same code drives either package, imported as `fl`. A client's
fit returns the parameters it received (plus INDEX + 1 when OFFSET is 1, which makes the weighted
mean a non-trivial function of every client's reply), with INDEX + 1 examples.

IMPL `grpc` is the floor under both: the same traffic on bare gRPC Python with nothing else. Its
server (grpc.aio, as fedsilo's) sends the model's bytes to every client in messages of at most
PACED_FRAME bytes and waits until each client has echoed them all back; a client (a blocking
stream, as both packages' clients) copies every message once, as any decode and encode would,
and sends it back. No protobuf, no checks, no aggregation: what a federation costs in gRPC alone.

Every process also notes its CPU time (user and system, all its threads): a server at the start of
every round and at the end of the last, a client at every fit (a floor client at every message),
written to OUT and CPU_OUT. The benchmark turns them into CPU seconds per round.
"""

from __future__ import annotations

import asyncio
import json
import queue
import resource
import sys
import time

FLOOR_METHOD = "/floor.Echo/Join"
FLOOR_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def import_impl(impl: str):  # type: ignore[no-untyped-def]
    if impl == "fedsilo":
        import fedsilo as fl
    else:
        import flwr as fl
    return fl


def initial_model(n_params: int):  # type: ignore[no-untyped-def]
    """The starting model every implementation gets: seeded, so final models compare."""
    import numpy as np

    return [np.random.default_rng(7).standard_normal(n_params, dtype=np.float32)]


def peak_rss_kib() -> int:
    """This process's peak resident memory. VmHWM belongs to the process's own address space;
    ru_maxrss can report the launching process's peak, which Linux carries across exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_server(impl: str, port: int, n_clients: int, n_params: int, rounds: int,
               out: str) -> None:
    import numpy as np

    fl = import_impl(impl)
    round_starts: list[float] = []
    finished: list[float] = []
    final: list[np.ndarray] = []
    cpu_marks: list[float] = []  # CPU time at every round's start, then at the last one's end

    def on_fit_config(server_round: int) -> dict:
        round_starts.append(time.perf_counter())
        cpu_marks.append(time.process_time())
        return {}

    def evaluate(server_round: int, parameters: list, config: dict):  # type: ignore[no-untyped-def]
        finished.append(time.perf_counter())
        if server_round == rounds:
            cpu_marks.append(time.process_time())
            final.append(np.array(parameters[0]))
        return 0.0, {}

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n_clients,
        min_available_clients=n_clients, min_evaluate_clients=n_clients,
        on_fit_config_fn=on_fit_config, evaluate_fn=evaluate,
        initial_parameters=fl.common.ndarrays_to_parameters(initial_model(n_params)))
    fl.server.start_server(server_address=f"127.0.0.1:{port}", strategy=strategy,
                           config=fl.server.ServerConfig(num_rounds=rounds),
                           grpc_max_message_length=2_000_000_000)
    # evaluate() runs at round 0 and after each round: round r ends at finished[r].
    durations = [finished[r + 1] - round_starts[r] for r in range(rounds)]
    peak_kib = peak_rss_kib()
    np.save(out + ".npy", final[0])
    with open(out, "w") as handle:
        json.dump({"round_seconds": durations, "peak_rss_mb": peak_kib / 1024,
                   "cpu_marks": cpu_marks}, handle)


def run_floor_server(port: int, n_clients: int, n_params: int, rounds: int, out: str) -> None:
    import grpc
    import numpy as np

    from fedsilo.common.chunking import PACED_FRAME  # fedsilo's frame size for large models

    model = initial_model(n_params)[0]
    data = model.tobytes()
    frames = [data[start:start + PACED_FRAME] for start in range(0, len(data), PACED_FRAME)]
    durations: list[float] = []
    cpu_marks: list[float] = []

    async def serve() -> None:
        joined: asyncio.Queue = asyncio.Queue()
        finished = asyncio.Event()

        async def join(requests, context):  # type: ignore[no-untyped-def]
            inbox: asyncio.Queue = asyncio.Queue()
            await joined.put((context, inbox))

            async def read() -> None:
                async for message in requests:
                    inbox.put_nowait(message)

            reader = asyncio.ensure_future(read())
            await finished.wait()
            await context.write(b"")  # the end: the client closes its stream
            await reader

        handler = grpc.method_handlers_generic_handler(
            "floor.Echo", {"Join": grpc.stream_stream_rpc_method_handler(join)})
        server = grpc.aio.server(options=FLOOR_OPTIONS)
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        peers = [await joined.get() for _ in range(n_clients)]

        async def exchange(context, inbox) -> None:  # type: ignore[no-untyped-def]
            for frame in frames:
                await context.write(frame)
            for _ in frames:
                await inbox.get()

        for _ in range(rounds):
            started = time.perf_counter()
            cpu_marks.append(time.process_time())
            await asyncio.gather(*(exchange(context, inbox) for context, inbox in peers))
            durations.append(time.perf_counter() - started)
        cpu_marks.append(time.process_time())
        finished.set()
        await server.stop(5)

    asyncio.run(serve())
    np.save(out + ".npy", model)
    with open(out, "w") as handle:
        json.dump({"round_seconds": durations, "peak_rss_mb": peak_rss_kib() / 1024,
                   "cpu_marks": cpu_marks}, handle)


def write_cpu_marks(cpu_out: str | None, marks: list[float]) -> None:
    if cpu_out:
        with open(cpu_out, "w") as handle:
            json.dump(marks, handle)


def run_floor_client(port: int, cpu_out: str | None = None) -> None:
    import grpc

    outgoing: queue.Queue = queue.Queue()
    marks: list[float] = []  # CPU time at every message
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=FLOOR_OPTIONS) as channel:
            replies = channel.stream_stream(FLOOR_METHOD)(iter(outgoing.get, None))
            for message in replies:
                if not message:
                    break
                marks.append(time.process_time())
                outgoing.put(bytes(memoryview(message)))  # one copy, as a decode + encode makes
            outgoing.put(None)
            for _ in replies:  # until the server ends the call
                pass
    finally:
        write_cpu_marks(cpu_out, marks)


def run_app_server(port: int, n_clients: int, n_params: int, rounds: int, out: str) -> None:
    """fedsilo's ServerApp with the Message-API FedAvg, fit-only, on its gRPC server."""
    import numpy as np

    from fedsilo.app import ArrayRecord, Context, RecordDict
    from fedsilo.serverapp import ServerApp, serve_server_app
    from fedsilo.serverapp.strategy import FedAvg

    times: list[float] = []  # before round 1, then after every round
    cpu_marks: list[float] = []
    final: list[np.ndarray] = []
    app = ServerApp()

    def mark(server_round: int, arrays: ArrayRecord) -> None:
        times.append(time.perf_counter())
        cpu_marks.append(time.process_time())
        if server_round == rounds:
            final.append(np.array(arrays["0"].numpy()))

    @app.main()
    def main(grid, context):  # type: ignore[no-untyped-def]
        FedAvg(fraction_evaluate=0.0, min_train_nodes=n_clients,
               min_available_nodes=n_clients).start(
            grid=grid, initial_arrays=ArrayRecord(initial_model(n_params)), num_rounds=rounds,
            evaluate_fn=mark)

    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    serve_server_app(app, context, server_address=f"127.0.0.1:{port}")
    np.save(out + ".npy", final[0])
    with open(out, "w") as handle:
        json.dump({"round_seconds": [b - a for a, b in zip(times, times[1:], strict=False)],
                   "peak_rss_mb": peak_rss_kib() / 1024, "cpu_marks": cpu_marks}, handle)


def run_client(impl: str, port: int, index: int, offset: bool,
               cpu_out: str | None = None) -> None:
    fl = import_impl(impl)
    weight = index + 1
    marks: list[float] = []  # CPU time at every fit

    class Echo(fl.client.NumPyClient):  # type: ignore[name-defined,misc]
        def get_parameters(self, config):  # type: ignore[no-untyped-def]
            raise RuntimeError("the strategy provides initial parameters")

        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            marks.append(time.process_time())
            if offset:
                return [p + weight for p in parameters], weight, {}
            return parameters, weight, {}

        def evaluate(self, parameters, config):  # type: ignore[no-untyped-def]
            return 0.0, 1, {}

    try:
        fl.client.start_numpy_client(server_address=f"127.0.0.1:{port}", client=Echo(),
                                     grpc_max_message_length=2_000_000_000)
    finally:
        write_cpu_marks(cpu_out, marks)


if __name__ == "__main__":
    role, impl, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if impl == "grpc" and role == "server":
        run_floor_server(port, int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    elif impl == "grpc":
        run_floor_client(port, sys.argv[6] if len(sys.argv) > 6 else None)
    elif impl == "fedsilo-app":
        run_app_server(port, int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    elif role == "server":
        run_server(impl, port, int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    else:
        run_client(impl, port, int(sys.argv[4]), sys.argv[5] == "1",
                   sys.argv[6] if len(sys.argv) > 6 else None)
