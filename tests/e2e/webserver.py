"""A test web server for the network-boot e2e tests: Debian's nginx-light serving one directory on 127.0.0.1.

API (import the fixture by name in a test module: `from webserver import web_server, dropping_proxy`):

    web_server                       session-scoped pytest fixture; a factory:
    web_server(root_dir) -> Server   starts one nginx serving root_dir (read-only) on 127.0.0.1, behind a Front
        .port                        the port to forward the guest to, on 127.0.0.1:
                                     qemu.net_args(server.port) = guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:<port>
        .url(path)                   the GUEST-side URL: "http://10.0.2.100/<path>"
        .local_url(path)             the host-side URL: "http://127.0.0.1:<port>/<path>" (host-side checks only)
        .nginx_port                  nginx's own port (host-side clients only; see below)
        .log()                       nginx's access log so far: "<method> <path> <status> <bytes> range=<Range>"
        .stop()                      stops nginx and its fronts (idempotent; also done at the end of the session)

    dropping_proxy(server, drop_after_bytes, times=1) -> Front
        another Front on 127.0.0.1 for the same nginx that cuts the first `times` requests after
        `drop_after_bytes` response bytes (headers included) and relays later ones whole: a server that stops
        mid-transfer, for the resume tests (the client resumes with `Range:` and gets the rest).
        .port                        forward the guest here instead of to server.port
        .connections / .requests / .dropped   client connections accepted / requests relayed / requests cut
        .stop()                      (also done when the server is stopped)

    no_server() -> Front             for the "no server" case: guestfwd needs a listener when QEMU starts
                                     (QEMU exits with "Failed to connect to '127.0.0.1:P'" otherwise), so
                                     this is a Front whose upstream port has nothing listening: every request
                                     is answered "502 Bad Gateway" (what a reverse proxy says). A guest can
                                     never see a refused connection through guestfwd. Stop it with .stop().

Why a Front (mpinit.httprelay.Relay) between the guest and nginx: QEMU's `guestfwd=...-tcp:127.0.0.1:P` is
one TCP connection opened when QEMU starts (QEMU refuses to start when nothing listens on P) that carries every
guest connection and never passes a close on to the guest; the first request would work and every later one be
lost (mpinit/httprelay.py has the details). The Front reads the requests off that connection one at a time and
sends each to nginx on a fresh connection. So the guest's HTTP client must frame responses by Content-Length
(or chunked encoding), never by the server closing the connection; and a cut ("the server dropped the
connection") reaches the guest as a stall, which it detects with its read timeout before resuming.

nginx runs as a child process of the test run, in the foreground (`daemon off`, `master_process off`: one
process, killed at teardown), with its own configuration, pid file, logs and temporary directories in a private
temporary directory, so it reads nothing under /etc/nginx and writes nothing under /var. It and the Fronts
listen on 127.0.0.1 only. Static files are served with byte ranges (nginx's range filter: `Range: bytes=N-`
gives 206 Partial Content), a Content-Length on every response, no directory listings, no compression. A port
picked free can be taken by someone else before nginx binds it: the start is retried on a new port when nginx
reports "Address already in use".
"""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mpinit.httprelay import Relay as Front

GUEST_HOST = "10.0.2.100"   # the address the QEMU guest connects to; guestfwd forwards it to 127.0.0.1:<port>
LOOPBACK = "127.0.0.1"      # the only address anything here binds or connects to
NGINX = "nginx"             # Debian package nginx-light (buildsys/setup.py installs it with no service started)
START_TIMEOUT_S = 20.0
START_TRIES = 5

_CONFIG = """\
# Written by tests/e2e/webserver.py: a private nginx serving one directory on the loopback only.
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
lock_file {tmp}/nginx.lock;
error_log {tmp}/error.log warn;
events {{
    worker_connections 64;
}}
http {{
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format ranges '$request_method $uri $status $body_bytes_sent range="$http_range"';
    access_log {tmp}/access.log ranges;
    types {{
        text/plain txt cfg sha256 sha512;
        application/octet-stream squashfs iso img;
    }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    server_tokens off;
    server {{
        listen {host}:{port};
        server_name _;
        root {root};
        # Serve what is in the tree only: no symlink out of it is followed (the root path is resolved).
        disable_symlinks on;
        autoindex off;
        location / {{
            try_files $uri =404;
        }}
    }}
}}
"""


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel's pick for a bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _quote(path):
    """A path as an nginx configuration string (double-quoted; nginx's parser takes backslash escapes)."""
    return '"%s"' % str(path).replace("\\", "\\\\").replace('"', '\\"')


class Server:
    """One running nginx; see the module docstring."""

    def __init__(self, root_dir):
        root = Path(root_dir).resolve()
        if not root.is_dir():
            raise ValueError("web_server: %s is not a directory" % root_dir)
        self.root = root
        self.port = None         # the Front's port: what guestfwd connects to
        self.nginx_port = None   # nginx's own port (host-side clients may use it directly)
        self._front = None
        self._proc = None
        self._proxies = []
        self._tmp = Path(tempfile.mkdtemp(prefix="mpinit-nginx-"))
        nginx = shutil.which(NGINX) or shutil.which(NGINX, path="/usr/sbin:/sbin")
        if not nginx:
            shutil.rmtree(self._tmp, ignore_errors=True)
            pytest.skip("nginx missing (Debian package nginx-light)")
        self._nginx = nginx
        error = ""
        for _ in range(START_TRIES):
            error = self._start(free_port())
            if not error:
                self._front = Front(self.nginx_port)
                self.port = self._front.port
                return
            if "Address already in use" not in error:
                break
        shutil.rmtree(self._tmp, ignore_errors=True)
        raise RuntimeError("web_server: nginx did not start: %s" % error)

    def _start(self, port):
        tmp = self._tmp
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / d).mkdir(exist_ok=True)
        conf = tmp / "nginx.conf"
        conf.write_text(_CONFIG.format(tmp=_quote(tmp)[1:-1], host=LOOPBACK, port=port, root=_quote(self.root)))
        errlog = tmp / "stderr.log"
        # -p: the prefix for relative paths (none are used; it keeps nginx off /usr/share/nginx); -e: the error
        # log before the configuration is read (else the compiled-in default); -c: our configuration only.
        argv = [self._nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]
        with open(errlog, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                                    cwd=tmp)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return self._errors() or "nginx exited with status %d" % proc.returncode
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            self.nginx_port = port
            self._proc = proc
            return ""
        proc.kill()
        proc.wait()
        return "no answer on %s:%d within %.0f s: %s" % (LOOPBACK, port, START_TIMEOUT_S, self._errors())

    def _errors(self):
        text = ""
        for name in ("stderr.log", "error.log"):
            p = self._tmp / name
            if p.exists():
                text += p.read_text(errors="replace")
        return text.strip()[-2000:]

    def url(self, path=""):
        return "http://%s/%s" % (GUEST_HOST, str(path).lstrip("/"))

    def local_url(self, path=""):
        return "http://%s:%d/%s" % (LOOPBACK, self.port, str(path).lstrip("/"))

    def log(self):
        p = self._tmp / "access.log"
        return p.read_text(errors="replace") if p.exists() else ""

    @property
    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def stop(self):
        for proxy in self._proxies + ([self._front] if self._front else []):
            proxy.stop()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._tmp.exists():
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __repr__(self):
        return "<web_server %s on %s:%s>" % (self.root, LOOPBACK, self.port)


@pytest.fixture(scope="session")
def web_server():
    """web_server(root_dir) -> Server; every server started through it is stopped at the end of the session."""
    servers = []

    def start(root_dir):
        server = Server(root_dir)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def dropping_proxy(server, drop_after_bytes, times=1, close_on_drop=False):
    """A Front in front of `server`'s nginx that cuts the first `times` requests after `drop_after_bytes`
    response bytes; stopped with the server. See Front for what a cut looks like to a QEMU guest."""
    proxy = Front(server.nginx_port, drop_after_bytes, times, close_on_drop=close_on_drop)
    server._proxies.append(proxy)
    return proxy


def no_server():
    """A Front with no web server behind it (see the module docstring); the caller stops it."""

    class _NoServer(Front):
        def stop(self):
            super().stop()
            self.hold.close()

    # Bound and never listening: connections to the port are refused, and nobody else can take it meanwhile.
    hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hold.bind((LOOPBACK, 0))
    front = _NoServer(hold.getsockname()[1])
    front.hold = hold
    return front
