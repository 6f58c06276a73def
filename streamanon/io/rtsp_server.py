"""A minimal RTSP server that lets clients pull the anonymized stream.

FFmpeg's RTSP muxer can only push (ANNOUNCE/RECORD to a server); its `rtsp_flags=listen` is an
input option. So streamanon serves `-o rtsp://0.0.0.0:8554/anon` as a relay: our own muxer
pushes, over TCP on loopback, to a secret path of this server, and every client that PLAYs the
public path gets the same RTP packets, TCP-interleaved (clients asking for UDP get "461" and
fall back to TCP, as FFmpeg, VLC and GStreamer do). Only the loopback publisher that knows the
secret path may ANNOUNCE, so nobody else can inject pictures.

A slow client never slows the stream down: each client has a bounded send queue and is
disconnected when it overflows.

The server runs in a child process (`ServerProcess`): PyAV holds the GIL while the RTSP muxer
does its ANNOUNCE/SETUP handshake, so a server thread in the same process could never answer.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from streamanon.errors import OutputError

log = logging.getLogger(__name__)

_METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, ANNOUNCE, RECORD"
_MAX_REQUEST = 64 * 1024
_CLIENT_QUEUE = 2048  # RTP packets (~2-3 s of 720p video) before a slow client is dropped


class RtspServer:
    """Relay one published stream to any number of RTSP clients on ``host:port`` + ``path``.

    ``port=0`` picks a free port (read it back from ``.port``).
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 8554,
        path: str = "/",
        publish_path: str | None = None,
    ) -> None:
        self.path = "/" + path.strip("/")
        self.publish_path = publish_path or f"/publish-{secrets.token_hex(8)}"
        self.sdp: bytes | None = None
        self._clients: set[_Client] = set()
        self._lock = threading.Lock()
        self._sock = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
        )
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise OutputError(f"rtsp://{host}:{port}: cannot listen ({exc.strerror})") from None
        self._sock.listen(16)
        self.host, self.port = host, self._sock.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="rtsp-server", daemon=True)

    @property
    def clients(self) -> int:
        """Clients currently playing."""
        with self._lock:
            return sum(1 for c in self._clients if c.playing)

    def start(self) -> None:
        self._thread.start()
        log.info("live: serving rtsp://%s:%d%s", self.host, self.port, self.path)

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, addr = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Client(self, conn, addr)
            with self._lock:
                self._clients.add(c)
            threading.Thread(target=c.serve, name=f"rtsp-{addr[1]}", daemon=True).start()

    def _forget(self, c: _Client) -> None:
        with self._lock:
            self._clients.discard(c)

    def _broadcast(self, channel: int, payload: bytes) -> None:
        with self._lock:
            clients = [c for c in self._clients if c.playing]
        for c in clients:
            c.send_rtp(channel, payload)


class _Client:
    """One TCP connection: the publisher (ANNOUNCE/RECORD) or a player (DESCRIBE/PLAY)."""

    def __init__(self, server: RtspServer, conn: socket.socket, addr: tuple) -> None:
        self.server, self.conn, self.addr = server, conn, addr
        self.session = secrets.token_hex(8)
        self.publisher = False
        self.playing = False
        self.channels: dict[int, int] = {}  # publisher channel -> this client's channel
        self._setups = 0
        self._out: queue.Queue[bytes | None] = queue.Queue(maxsize=_CLIENT_QUEUE)
        self._closed = threading.Event()
        self._send_lock = threading.Lock()

    # -- sending ---------------------------------------------------------------------------

    def send_rtp(self, channel: int, payload: bytes) -> None:
        ch = self.channels.get(channel, channel)
        try:
            self._out.put_nowait(bytes((0x24, ch)) + len(payload).to_bytes(2, "big") + payload)
        except queue.Full:
            log.warning("live: rtsp client %s too slow; disconnected", self.addr[0])
            self.close()

    def _sender(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._out.get(timeout=0.5)
            except queue.Empty:
                continue
            if data is None:
                return
            try:
                with self._send_lock:
                    self.conn.sendall(data)
            except OSError:
                self.close()
                return

    def _reply(self, cseq: str, status: str = "200 OK", headers=(), body: bytes = b"") -> None:
        lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", "Server: streamanon"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        with self._send_lock:
            self.conn.sendall(data)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self.playing:
            log.info("live: rtsp client %s left", self.addr[0])
        self.playing = False
        try:
            self._out.put_nowait(None)
        except queue.Full:
            pass
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.server._forget(self)

    # -- receiving -------------------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self._sender, daemon=True).start()
        buf = bytearray()
        try:
            while not self._closed.is_set():
                data = self.conn.recv(65536)
                if not data:
                    break
                buf += data
                while buf and self._consume(buf):
                    pass
                if len(buf) > _MAX_REQUEST and buf[:1] != b"$":
                    break  # not RTSP
        except (OSError, ValueError) as exc:
            log.debug("live: rtsp connection %s: %s", self.addr, exc)
        finally:
            if self.publisher:
                log.info("live: rtsp publisher disconnected")
            self.close()

    def _consume(self, buf: bytearray) -> bool:
        """Handle one complete interleaved packet or request at the start of ``buf``."""
        if buf[0] == 0x24:
            if len(buf) < 4:
                return False
            n = int.from_bytes(buf[2:4], "big")
            if len(buf) < 4 + n:
                return False
            channel, payload = buf[1], bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            if self.publisher:
                self.server._broadcast(channel, payload)
            return True  # players' RTCP receiver reports are read and ignored
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if len(buf) < end + 4 + length:
            return False
        body = bytes(buf[end + 4 : end + 4 + length])
        del buf[: end + 4 + length]
        parts = head[0].split()
        if len(parts) != 3 or not parts[2].startswith("RTSP/"):
            raise ValueError(f"not an RTSP request: {head[0][:60]!r}")
        self._handle(parts[0].upper(), parts[1], headers, body)
        return True

    def _handle(self, method: str, url: str, h: dict[str, str], body: bytes) -> None:
        srv = self.server
        cseq = h.get("cseq", "0")
        path = urlsplit(url).path.rstrip("/") if url != "*" else "*"
        session = [("Session", f"{self.session};timeout=60")]
        public = path == srv.path.rstrip("/") or path.startswith(srv.path.rstrip("/") + "/")
        if method == "OPTIONS":
            self._reply(cseq, headers=[("Public", _METHODS)])
        elif method == "ANNOUNCE":
            if path != srv.publish_path or self.addr[0] not in ("127.0.0.1", "::1"):
                self._reply(cseq, "403 Forbidden")
                return
            self.publisher = True
            srv.sdp = body
            log.info("live: rtsp publisher connected")
            self._reply(cseq)
        elif method == "DESCRIBE":
            if not public:
                self._reply(cseq, "404 Not Found")
            elif srv.sdp is None:
                self._reply(cseq, "503 Service Unavailable")
            else:
                base = f"rtsp://{h.get('host') or urlsplit(url).netloc}{srv.path.rstrip('/')}/"
                if url.startswith("rtsp://"):
                    base = url.rstrip("/") + "/"
                self._reply(
                    cseq,
                    headers=[("Content-Base", base), ("Content-Type", "application/sdp")],
                    body=srv.sdp,
                )
        elif method == "SETUP":
            transport = h.get("transport", "")
            if self.publisher:
                self._reply(cseq, headers=[("Transport", transport), *session])
                return
            if not public or srv.sdp is None:
                self._reply(cseq, "404 Not Found")
                return
            if "interleaved=" not in transport or "TCP" not in transport.upper():
                self._reply(cseq, "461 Unsupported Transport")
                return
            first = int(transport.split("interleaved=")[1].split("-")[0].split(";")[0])
            # Publisher streams are set up in SDP order on channels 0-1, 2-3, ...
            pub = 2 * self._setups
            self.channels[pub], self.channels[pub + 1] = first, first + 1
            self._setups += 1
            self._reply(
                cseq,
                headers=[
                    ("Transport", f"RTP/AVP/TCP;unicast;interleaved={first}-{first + 1}"),
                    *session,
                ],
            )
        elif method == "PLAY":
            if not self.channels:
                self._reply(cseq, "455 Method Not Valid in This State")
                return
            self._reply(cseq, headers=[("Range", "npt=0.000-"), *session])
            self.playing = True
            log.info("live: rtsp client %s playing", self.addr[0])
        elif method == "RECORD":
            self._reply(cseq, headers=session) if self.publisher else self._reply(
                cseq, "455 Method Not Valid in This State"
            )
        elif method in ("GET_PARAMETER", "SET_PARAMETER", "PAUSE"):
            self._reply(cseq, headers=session)
        elif method == "TEARDOWN":
            self._reply(cseq, headers=session)
            self.close()
        else:
            self._reply(cseq, "501 Not Implemented")


class ServerProcess:
    """`RtspServer` in a child process; ``port`` and ``publish_path`` as in the server.

    The child exits when ``stop()`` is called or when this process dies (its stdin closes).
    """

    def __init__(self, host: str = "0.0.0.0", port: int = 8554, path: str = "/") -> None:
        self.host, self.path = host, "/" + path.strip("/")
        self.publish_path = f"/publish-{secrets.token_hex(8)}"
        verbose = "1" if log.isEnabledFor(logging.INFO) else "0"
        args = [sys.executable, "-m", __name__, host, str(port), self.path, self.publish_path]
        # The child must import this very package, installed or not.
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        self.proc = subprocess.Popen(
            [*args, verbose], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        line = self.proc.stdout.readline().strip()  # "port N" once listening, or an error
        if not line.startswith("port "):
            self.proc.wait(timeout=10)
            raise OutputError(line or f"rtsp://{host}:{port}: server failed to start")
        self.port = int(line.split()[1])
        log.info("live: serving rtsp://%s:%d%s", host, self.port, self.path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _child_main(argv: list[str]) -> int:
    host, port, path, publish_path, verbose = argv
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO if verbose == "1" else logging.WARNING,
        format="streamanon: %(message)s",
    )
    try:
        server = RtspServer(host, int(port), path, publish_path)
    except OutputError as exc:
        print(str(exc), flush=True)
        return 1
    server._thread.start()
    print(f"port {server.port}", flush=True)
    sys.stdin.read()  # returns when the parent closes our stdin or dies
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
