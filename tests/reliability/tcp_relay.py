"""A TCP relay between a client and the server whose connections a test can cut."""

from __future__ import annotations

import socket
import threading
import time

_LINGER_ZERO = (1).to_bytes(4, "little") + (0).to_bytes(4, "little")  # struct linger {1, 0}


class TcpRelay:
    """Listens on 127.0.0.1 and forwards every connection to ``target_port``.

    ``cut`` closes the connections open now, as a network failure would; new
    connections are relayed again afterwards.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.accepted = 0
        self.traffic: list[tuple[float, int]] = []  # (monotonic time, bytes) of each read
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self.accepted += 1
                self._open += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.traffic.append((time.monotonic(), len(data)))
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._listener.close()
        self.cut()
