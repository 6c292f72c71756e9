"""The network-boot test server (tests/e2e/webserver.py): a real nginx on 127.0.0.1, checked with a plain Python
HTTP client; and the dropping proxy the resume tests put in front of it. No QEMU here (not marked e2e)."""

import hashlib
import http.client
import os
import socket
import subprocess

import pytest

from rawhttp import read_response, send_get
from webserver import GUEST_HOST, LOOPBACK, Server, dropping_proxy, no_server, web_server  # noqa: F401

PAYLOAD = bytes(range(256)) * 4096 + b"tail"   # 1 MiB + 4 bytes, every offset distinguishable


@pytest.fixture(scope="module")
def served(web_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "live").mkdir()
    (root / "live" / "filesystem.squashfs").write_bytes(PAYLOAD)
    (root / "hello.txt").write_text("hello\n")
    return web_server(root)


def _get(port, path, headers=None):
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=20)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_get_serves_the_file_whole_with_its_length(served):
    status, headers, body = _get(served.port, "/live/filesystem.squashfs")
    assert status == 200
    assert body == PAYLOAD
    assert int(headers["content-length"]) == len(PAYLOAD)
    assert headers.get("accept-ranges") == "bytes"
    assert "GET /live/filesystem.squashfs 200" in served.log()


def test_range_get_resumes_from_an_offset(served):
    status, headers, body = _get(served.port, "/live/filesystem.squashfs", {"Range": "bytes=1000000-"})
    assert status == 206
    assert body == PAYLOAD[1000000:]
    assert headers["content-range"] == "bytes 1000000-%d/%d" % (len(PAYLOAD) - 1, len(PAYLOAD))
    status, _, body = _get(served.port, "/live/filesystem.squashfs", {"Range": "bytes=10-19"})
    assert status == 206 and body == PAYLOAD[10:20]
    assert 'range="bytes=10-19"' in served.log()


def test_range_past_the_end_is_416(served):
    status, _, _ = _get(served.port, "/live/filesystem.squashfs", {"Range": "bytes=%d-" % (len(PAYLOAD) + 5)})
    assert status == 416


def test_missing_file_and_directory_are_404(served):
    assert _get(served.port, "/live/nope.squashfs")[0] == 404
    assert _get(served.port, "/live/")[0] == 404   # no directory listings


def test_urls_guest_side_and_host_side(served):
    assert served.url("live/filesystem.squashfs") == "http://%s/live/filesystem.squashfs" % GUEST_HOST
    assert served.url("/x") == "http://10.0.2.100/x"
    assert served.local_url("x") == "http://127.0.0.1:%d/x" % served.port


@pytest.mark.parametrize("which", ["port", "nginx_port"])
def test_listens_on_the_loopback_only(served, which):
    port = getattr(served, which)
    out = subprocess.run(["ss", "-ltnH", "sport = :%d" % port], capture_output=True, text=True).stdout
    locals_ = [line.split()[3] for line in out.splitlines() if line.strip()]
    assert locals_ == ["%s:%d" % (LOOPBACK, port)], out


def test_a_second_server_gets_its_own_port_and_stop_frees_it(web_server, tmp_path):
    (tmp_path / "a").write_bytes(b"A")
    s = web_server(tmp_path)
    assert s.port and s.running and s.nginx_port != s.port
    assert _get(s.port, "/a")[2] == b"A"
    assert _get(s.nginx_port, "/a")[2] == b"A"
    s.stop()
    s.stop()  # idempotent
    assert not s.running
    for port in (s.port, s.nginx_port):
        with pytest.raises(OSError):
            socket.create_connection((LOOPBACK, port), timeout=2).close()


def test_server_refuses_a_missing_root(tmp_path):
    with pytest.raises(ValueError, match="nope is not a directory"):
        Server(tmp_path / "nope")


def test_front_serves_many_requests_on_one_connection_like_guestfwd(served):
    # QEMU's guestfwd: every guest connection arrives on the one connection QEMU opened at start, each
    # request saying "Connection: close"; each must still be answered.
    sock = socket.create_connection((LOOPBACK, served.port), timeout=20)
    try:
        for path, want in (("/hello.txt", b"hello\n"), ("/live/filesystem.squashfs", PAYLOAD),
                           ("/nope", None), ("/hello.txt", b"hello\n")):
            send_get(sock, path)
            status, headers, body, rest = read_response(sock)
            assert rest == b""
            if want is None:
                assert status == 404
            else:
                assert status == 200 and body == want
            assert "connection" not in headers  # nginx's "close" is not passed on: the connection stays
    finally:
        sock.close()


def test_front_abandons_a_response_when_a_new_request_arrives(served):
    sock = socket.create_connection((LOOPBACK, served.port), timeout=20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        send_get(sock, "/live/filesystem.squashfs")
        first = sock.recv(1000)
        assert first.startswith(b"HTTP/1.1 200")
        send_get(sock, "/hello.txt")   # the guest gave up and opened a new connection
        buf = b""
        while b"HTTP/1.1 200 OK\r\n" not in buf[len(first):] or not buf.endswith(b"hello\n"):
            data = sock.recv(65536)
            assert data
            buf += data
        assert len(buf) < len(PAYLOAD)   # the rest of the big response was not sent
    finally:
        sock.close()


def test_dropping_proxy_stalls_the_first_request_then_resume_succeeds(served):
    proxy = dropping_proxy(served, 300000)
    sock = socket.create_connection((LOOPBACK, proxy.port), timeout=3)
    send_get(sock, "/live/filesystem.squashfs")
    got = b""
    with pytest.raises(socket.timeout):   # the transfer stops; the connection stays open (a stall)
        while True:
            data = sock.recv(65536)
            assert data, "the proxy closed the connection instead of stalling"
            got += data
    assert len(got) == 300000 and proxy.dropped == 1
    head, _, body = got.partition(b"\r\n\r\n")
    assert PAYLOAD.startswith(body)
    # Resume on the same (guestfwd-like) connection: the second request is not cut.
    sock.settimeout(20)
    send_get(sock, "/live/filesystem.squashfs", "Range: bytes=%d-\r\n" % len(body))
    status, headers, rest, _ = read_response(sock)
    sock.close()
    assert status == 206
    assert hashlib.sha256(body + rest).digest() == hashlib.sha256(PAYLOAD).digest()
    assert proxy.requests == 2 and proxy.dropped == 1 and proxy.connections == 1
    proxy.stop()
    with pytest.raises(OSError):
        socket.create_connection((LOOPBACK, proxy.port), timeout=2).close()


def test_dropping_proxy_close_on_drop_gives_host_clients_an_eof(served):
    proxy = dropping_proxy(served, 0, times=2, close_on_drop=True)
    for _ in range(2):
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _get(proxy.port, "/hello.txt")
    assert _get(proxy.port, "/hello.txt")[2] == b"hello\n"
    assert proxy.dropped == 2 and proxy.requests == 3
    proxy.stop()


def test_nginx_wrote_nothing_outside_its_private_directory(served):
    # Its pid file and logs are in the temporary directory, not the compiled-in /run and /var/log paths.
    tmp = served._tmp
    assert (tmp / "nginx.pid").read_text().strip() == str(served._proc.pid)
    assert (tmp / "access.log").exists()
    assert not os.path.exists("/run/nginx.pid") or int(open("/run/nginx.pid").read() or 0) != served._proc.pid


def test_no_server_answers_502_and_keeps_its_port_refused():
    front = no_server()
    try:
        status, _, body = _get(front.port, "/live/filesystem.squashfs")
        assert status == 502 and b"no web server on 127.0.0.1:%d" % front.upstream_port in body
        with pytest.raises(OSError):
            socket.create_connection((LOOPBACK, front.upstream_port), timeout=2).close()
    finally:
        front.stop()


def test_symlinks_out_of_the_tree_are_not_followed(web_server, tmp_path):
    (tmp_path / "www").mkdir()
    (tmp_path / "secret").write_text("outside\n")
    (tmp_path / "www" / "inside.txt").write_text("inside\n")
    (tmp_path / "www" / "link").symlink_to(tmp_path / "secret")
    s = web_server(tmp_path / "www")
    assert _get(s.port, "/inside.txt")[2] == b"inside\n"
    status, _, body = _get(s.port, "/link")
    assert status in (403, 404) and b"outside" not in body   # try_files sees no file: 404
    s.stop()
