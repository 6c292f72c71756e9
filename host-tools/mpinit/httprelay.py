"""An HTTP relay for QEMU's guestfwd: one upstream connection per request, on 127.0.0.1 only.

QEMU's `-netdev user,...,guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:PORT` connects a *chardev*: one TCP connection
to 127.0.0.1:PORT, opened when QEMU starts (QEMU refuses to start when nothing listens there) and never
reconnected. Every TCP connection the guest opens to 10.0.2.100:80 is spliced onto that one host connection, and
the host side closing it is not passed on to the guest (QEMU's net/slirp.c registers read handlers only on the
guestfwd chardev, no close event). With a web server directly behind it, the first request works and every
later one is lost once the server has closed the connection (which it does after a `Connection: close`
request: measured with QEMU 7.2, nginx and busybox wget).

The Relay listens where guestfwd connects, reads the requests off the long-lived connection one at a time and
sends each to the real server on a fresh connection, so any web server (nginx, `python3 -m http.server --bind
127.0.0.1`) serves a guest that opens many connections: the image's .sha256, the image, a resume after a drop.
The guest's HTTP client must frame each response by its Content-Length or chunked coding, never by the server
closing the connection (the mpinit agent's client does). `mpinit qemu --net-port` runs one for its boot; the
network e2e tests put one in front of their nginx (tests/e2e/webserver.py).
"""

import select
import socket
import threading

LOOPBACK = "127.0.0.1"   # the only address the relay binds or connects to


class Relay:
    """An HTTP relay on 127.0.0.1:<port> in front of a web server on 127.0.0.1:<upstream_port>, one upstream
    connection per request (see the module docstring: QEMU's guestfwd carries every guest connection over one
    long-lived TCP connection to us). .port is where to point guestfwd; stop() ends it (threads are daemons).

    Each request head read from a client connection (plus its Content-Length body) goes upstream on a new
    connection with `Connection: close`; the response comes back with the server's Connection header removed
    (HTTP/1.1: the client connection stays open) and the relay reads the next request from the same client
    connection. An upstream that refuses the connection is answered with 502 Bad Gateway naming its port.
    A new request arriving while a response is still being relayed means the guest gave up on the old one:
    the old response is abandoned (its remaining bytes would otherwise reach the guest's new connection).

    drop_after_bytes/times: the first `times` requests get only their first `drop_after_bytes` response bytes
    (headers included); the rest of that response is thrown away and the client connection stays open: the
    transfer stops, and a guest's HTTP client sees the stall, times out and resumes with Range on a new
    connection. close_on_drop: close the client connection at the cut instead (host-side clients, which see
    an EOF; never for QEMU, whose guestfwd does not reconnect)."""

    MAX_HEAD = 65536          # a request head longer than this ends the connection
    MAX_BODY = 1 << 20        # request bodies are buffered whole; GETs (all a boot sends) have none

    def __init__(self, upstream_port, drop_after_bytes=None, times=0, close_on_drop=False):
        if drop_after_bytes is not None and (drop_after_bytes < 0 or times < 0):
            raise ValueError("Relay: drop_after_bytes and times must be >= 0")
        self.upstream_port = upstream_port
        self.drop_after_bytes = drop_after_bytes
        self.times = int(times)
        self.close_on_drop = close_on_drop
        self.connections = 0    # client connections accepted (QEMU: one for the whole boot)
        self.requests = 0       # requests relayed (a guest's HTTP connections)
        self.dropped = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._socks = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="httprelay:%d" % self.port, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _close(self, *socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            with self._lock:
                self._socks.discard(s)

    @staticmethod
    def _split_head(buf):
        end = buf.find(b"\r\n\r\n")
        return (None, buf) if end < 0 else (buf[:end + 4], buf[end + 4:])

    @staticmethod
    def _rewrite_request(head):
        """(the head for upstream: hop-by-hop Connection headers dropped, "Connection: close" added; the request
        body's Content-Length, 0 when absent or not a number)."""
        lines = head[:-4].split(b"\r\n")
        keep = [lines[0]] + [l for l in lines[1:] if l.split(b":", 1)[0].strip().lower()
                             not in (b"connection", b"keep-alive", b"proxy-connection")]
        length = 0
        for l in lines[1:]:
            name, _, value = l.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        return b"\r\n".join(keep + [b"Connection: close"]) + b"\r\n\r\n", length

    @staticmethod
    def _rewrite_response(head):
        lines = head[:-4].split(b"\r\n")
        keep = [l for l in lines if l.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")]
        return b"\r\n".join(keep) + b"\r\n\r\n"

    def _bad_gateway(self, error):
        body = ("mpinit httprelay: no web server on %s:%d (%s)\n" % (LOOPBACK, self.upstream_port, error)).encode()
        return (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                % len(body)) + body

    def _serve(self, client):
        buf = b""
        try:
            while not self._stopped.is_set():
                head, buf = self._split_head(buf)
                if head is None:
                    if len(buf) > self.MAX_HEAD:
                        break
                    data = client.recv(65536)
                    if not data:
                        break
                    buf += data
                    continue
                request, length = self._rewrite_request(head)
                if length > self.MAX_BODY:
                    client.sendall(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
                    break
                while len(buf) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    buf += data
                request, buf = request + buf[:length], buf[length:]
                with self._lock:
                    index = self.requests
                    self.requests += 1
                limit = self.drop_after_bytes if index < self.times else None
                try:
                    upstream = socket.create_connection((LOOPBACK, self.upstream_port), timeout=10)
                except OSError as e:
                    client.sendall(self._bad_gateway(e))
                    continue
                upstream.settimeout(None)
                with self._lock:
                    self._socks.add(upstream)
                try:
                    upstream.sendall(request)
                    sent, rhead = 0, b""
                    while True:
                        ready, _, _ = select.select([upstream, client], [], [])
                        if client in ready:
                            data = client.recv(65536)
                            if not data:
                                return
                            buf += data  # a new request: the client gave up on this response
                            break
                        data = upstream.recv(65536)
                        if not data:
                            break
                        if rhead is not None:
                            rhead += data
                            head_end = rhead.find(b"\r\n\r\n")
                            if head_end < 0:
                                continue
                            data = self._rewrite_response(rhead[:head_end + 4]) + rhead[head_end + 4:]
                            rhead = None
                        if limit is not None and sent + len(data) >= limit:
                            client.sendall(data[:limit - sent])
                            with self._lock:
                                self.dropped += 1
                            if self.close_on_drop:
                                return
                            break
                        client.sendall(data)
                        sent += len(data)
                finally:
                    self._close(upstream)
        except (OSError, ValueError):  # ValueError: select() on a socket stop() closed meanwhile
            pass
        finally:
            self._close(client)

    def stop(self):
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._close(self._listener)
        with self._lock:
            socks = list(self._socks)
        self._close(*socks)
        self._thread.join(5)
