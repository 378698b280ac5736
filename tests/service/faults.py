"""Dependency faults on 127.0.0.1 for the readiness and worker tests.

``FrozenServer`` accepts connections and never answers: what a Redis or PostgreSQL stopped by
SIGSTOP looks like to a client (the kernel completes the handshake, nothing ever replies).
``TcpProxy`` forwards to a real server until ``refuse()``: then its port refuses connections and
the open ones are cut, as when the server goes away; or until ``freeze()``: then nothing is
forwarded any more, in either direction, on open or new connections (SIGSTOP). ``thaw()`` and
``restore()`` bring the server back on the same port (SIGCONT, a restart).
"""

from __future__ import annotations

import socket
import threading


class FrozenServer:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="frozen-server", daemon=True).start()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)  # read nothing, answer nothing

    def close(self) -> None:
        self._closed = True
        for sock in [self._listener, *self._held]:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> FrozenServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._refusing = False
        self._frozen = threading.Event()
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._frozen.is_set():
                with self._lock:
                    self._open.append(client)  # accepted by the kernel, never answered
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._refusing:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self._frozen.is_set():  # frozen: swallowed, as a stopped process would
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def freeze(self) -> None:
        """From now on nothing is forwarded: every call waits for an answer that never comes."""
        self._frozen.set()

    def refuse(self) -> None:
        """From now on the port refuses connections; the open ones are cut."""
        with self._lock:
            self._refusing = True
            sockets, self._open = self._open, []
        self._listener.close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def thaw(self) -> None:
        """Forward again (SIGCONT): new connections work; those opened while frozen stay broken."""
        self._frozen.clear()

    def restore(self) -> None:
        """After ``refuse()``: the same port accepts and forwards again (the server is back)."""
        self._listener = socket.create_server(("127.0.0.1", self.port))
        with self._lock:
            self._refusing = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def close(self) -> None:
        self.refuse()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
