"""mpinit.httprelay: the relay that lets QEMU's one-connection guestfwd reach a web server many times. Checked
against Python's own http.server on 127.0.0.1 (tests/e2e/test_webserver.py checks it in front of nginx)."""

import functools
import http.server
import socket
import threading

import pytest

from mpinit.httprelay import LOOPBACK, Relay
from rawhttp import read_response, send_get


@pytest.fixture
def upstream(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"alpha\n")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 1024)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.func.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _response(sock):
    status, headers, body, rest = read_response(sock)
    assert rest == b"", "bytes past the response's Content-Length"
    return status, headers, body


def test_many_requests_over_one_connection(upstream):
    relay = Relay(upstream)
    try:
        with socket.create_connection((LOOPBACK, relay.port), timeout=20) as s:
            for path, status, body in (("/a.txt", 200, b"alpha\n"), ("/nope", 404, None),
                                       ("/b.bin", 200, bytes(range(256)) * 1024), ("/a.txt", 200, b"alpha\n")):
                send_get(s, path)
                got_status, headers, got = _response(s)
                assert got_status == status
                if body is not None:
                    assert got == body
                assert "connection" not in headers
        assert relay.connections == 1 and relay.requests == 4 and relay.dropped == 0
    finally:
        relay.stop()


def test_no_upstream_is_a_502_naming_the_port():
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        dead = probe.getsockname()[1]   # bound, not listening: connections are refused
        relay = Relay(dead)
        try:
            with socket.create_connection((LOOPBACK, relay.port), timeout=20) as s:
                send_get(s, "/a.txt")
                status, _, body = _response(s)
                assert status == 502 and (":%d" % dead).encode() in body
                send_get(s, "/a.txt")       # the connection stays usable
                assert _response(s)[0] == 502
        finally:
            relay.stop()


def test_a_request_body_is_passed_on_whole(upstream):
    relay = Relay(upstream)
    try:
        with socket.create_connection((LOOPBACK, relay.port), timeout=20) as s:
            # SimpleHTTPRequestHandler has no POST: 501, after the relay sent the head and the 5 body bytes.
            s.sendall(b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            assert _response(s)[0] == 501
            send_get(s, "/a.txt")
            assert _response(s)[2] == b"alpha\n"   # the body did not leak into the next request
    finally:
        relay.stop()


def test_listens_on_the_loopback_only_and_stop_closes(upstream):
    relay = Relay(upstream)
    assert relay._listener.getsockname()[0] == LOOPBACK
    relay.stop()
    relay.stop()
    with pytest.raises(OSError):
        socket.create_connection((LOOPBACK, relay.port), timeout=2).close()


def test_bad_drop_settings_are_refused(upstream):
    with pytest.raises(ValueError, match="must be >= 0"):
        Relay(upstream, drop_after_bytes=-1, times=1)


def test_a_huge_request_body_is_refused_not_buffered(upstream):
    relay = Relay(upstream)
    try:
        with socket.create_connection((LOOPBACK, relay.port), timeout=20) as s:
            s.sendall(b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc")
            assert _response(s)[0] == 413
            assert s.recv(100) == b""   # and the connection is closed
    finally:
        relay.stop()


try:
    from hypothesis import given, settings
    from hypothesis import strategies as hs
except ImportError:  # pragma: no cover
    given = None


if given is not None:
    _header_bytes = hs.binary(max_size=300) | hs.lists(
        hs.sampled_from([b"GET / HTTP/1.1", b"Connection: close", b"Content-Length: 5", b"Content-Length: -1",
                         b"content-length:  12 ", b"Keep-Alive: 5", b":", b"", b"X: \xff\x00"]),
        max_size=8).map(b"\r\n".join)

    @settings(max_examples=300, deadline=None)
    @given(_header_bytes)
    def test_head_rewriting_never_raises_and_always_closes_upstream(head):
        whole, rest = Relay._split_head(head + b"\r\n\r\n")
        assert whole is not None and whole + rest == head + b"\r\n\r\n" and whole.endswith(b"\r\n\r\n")
        req, length = Relay._rewrite_request(whole)
        assert req.endswith(b"Connection: close\r\n\r\n") and length >= 0
        headers = req.split(b"\r\n")[1:]   # after the request line
        assert sum(1 for line in headers if line.split(b":", 1)[0].strip().lower() == b"connection") == 1
        resp = Relay._rewrite_response(whole)
        assert resp.endswith(b"\r\n\r\n")
        assert not any(line.split(b":", 1)[0].strip().lower() == b"connection" for line in resp.split(b"\r\n"))
