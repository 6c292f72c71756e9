"""mpinit_agent.http: the response head and chunked-coding parsers (edge cases, every split point, fuzzed), and
Download against the fake machine's scripted web servers: Content-Length, chunked, redirects, short reads and
resume with Range/If-Range, a changed file, 404/500, retries, a server that is not there."""

import errno
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from mpinit_agent import http

DATA = bytes(range(256)) * 1200      # 300 KiB: several 64 KiB reads


def test_parse_head():
    status, reason, headers = http.parse_head(
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nX-A: 1\r\nx-a: 2\r\nETag: \"e\"")
    assert (status, reason) == (206, "Partial Content")
    assert headers == {"content-length": "10", "x-a": "1, 2", "etag": '"e"'}
    assert http.parse_head(b"HTTP/1.0 200")[:2] == (200, "")


@pytest.mark.parametrize("head", [b"", b"HTTP/2 200 OK", b"HTTP/1.1 2x0 OK", b"ICY 200 OK", b"HTTP/1.1 099 x",
                                  b"HTTP/1.1 200 OK\r\nno colon", b"HTTP/1.1 200 OK\r\n folded: x"])
def test_parse_head_rejects(head):
    with pytest.raises(http.HttpError):
        http.parse_head(head)


@pytest.mark.parametrize("value, want", [("10", 10), ("10, 10", 10), (None, None)])
def test_content_length(value, want):
    assert http.content_length({} if value is None else {"content-length": value}) == want


@pytest.mark.parametrize("value", ["-1", "1e3", "10, 11", "", "9" * 19])
def test_content_length_rejects(value):
    with pytest.raises(http.HttpError):
        http.content_length({"content-length": value})


def test_content_range():
    assert http.content_range({"content-range": "bytes 100-199/1000"}) == (100, 199, 1000)
    assert http.content_range({"content-range": "bytes 0-0/*"}) == (0, 0, None)
    for bad in ("bytes 5-4/10", "items 0-1/2", "bytes 0-x/1", ""):
        with pytest.raises(http.HttpError):
            http.content_range({"content-range": bad})


def _chunked(body, size=7):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\nTrailer: x\r\n\r\n"


@pytest.mark.parametrize("split", range(0, 60, 3))
def test_chunk_decoder_at_every_split(split):
    enc = _chunked(b"hello chunked world, 0123456789")
    d = http.ChunkDecoder()
    got = b""
    for part in (enc[:split], enc[split:]):
        for piece in d.feed(memoryview(part)):
            got += bytes(piece)
    assert got == b"hello chunked world, 0123456789" and d.done


@pytest.mark.parametrize("enc", [b"zz\r\n", b"5\r\nhelloX\r\n", b"1" * 20 + b"\r\n", b"a" * 5000])
def test_chunk_decoder_rejects(enc):
    with pytest.raises(http.HttpError):
        http.ChunkDecoder().feed(memoryview(enc))


@settings(max_examples=500, deadline=None)
@given(hs.binary(max_size=300))
def test_parse_head_fuzz(data):
    try:
        status, reason, headers = http.parse_head(data)
        http.content_length(headers)
        if "content-range" in headers:
            http.content_range(headers)
        http.is_chunked(headers)
    except http.HttpError:
        pass


@settings(max_examples=500, deadline=None)
@given(hs.binary(max_size=300), hs.integers(min_value=1, max_value=50))
def test_chunk_decoder_fuzz(data, step):
    d = http.ChunkDecoder()
    try:
        for i in range(0, len(data), step):
            d.feed(memoryview(data[i:i + step]))
    except http.HttpError:
        pass


# ---- downloads in the fake machine -----------------------------------------------------------------------------

def download(fake_machine, url, setup, path="/tmp/out", hash_=True, check_size=None, before=None, **kw):
    m = fake_machine()
    if before is not None:
        before(m)
    m.add_nic("eth0")
    srv = m.add_http_server("10.0.2.100")
    setup(srv)
    out = {}

    def entry():
        from mpinit_agent import syscalls as sc

        sc.if_set_flags("eth0", sc.IFF_UP)
        sc.if_set_addr("eth0", "10.0.2.15", "255.255.255.0")
        d = http.Download(url, path, new_hash=hashlib.sha256 if hash_ else None, check_size=check_size,
                          quiet=True, **kw)
        try:
            d.run()
            out["data"] = open(path, "rb").read()
        except http.HttpError as e:
            out["error"] = e
        out["d"] = d
        out["clock"] = sc.uptime_ms()
    m.boot(entry)
    out["net"] = m.net
    return srv, out


def _ok(out, data=DATA):
    assert "error" not in out, out.get("error")
    assert out["data"] == data
    assert out["d"].hash.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kw", [{}, {"chunked": True}], ids=["content-length", "chunked"])
def test_plain_download(fake_machine, kw):
    srv, out = download(fake_machine, "http://10.0.2.100/f", lambda s: s.serve("/f", DATA, **kw))
    _ok(out)
    assert srv.log == [("GET", "/f", None)]


@pytest.mark.parametrize("kw", [{}, {"chunked": True}, {"reset": True}], ids=["eof", "chunked", "reset"])
def test_drop_then_resume_with_range(fake_machine, kw):
    srv, out = download(fake_machine, "http://10.0.2.100/f",
                        lambda s: s.serve("/f", DATA, drop_after=[100000, 50000], **kw))
    _ok(out)
    ranges = [r for _, _, r in srv.log]
    if kw.get("chunked"):   # the drop counts encoded bytes: a little less body each time
        starts = [int(r[6:-1]) for r in ranges[1:]]
        assert ranges[0] is None and 99000 < starts[0] < 100000 < starts[1] < 150000
    else:
        assert ranges == [None, "bytes=100000-", "bytes=150000-"]
    assert srv.resources["/f"].requests[1][2]["if-range"] == '"mpinit-1"'
    assert out["d"].resumed == 2


def test_server_without_ranges_restarts_from_zero(fake_machine):
    srv, out = download(fake_machine, "http://10.0.2.100/f",
                        lambda s: s.serve("/f", DATA, drop_after=100000, ranges=False))
    _ok(out)
    assert any("restarting from byte 0" in t for t in out["d"].tried)


def test_redirects_relative_and_absolute(fake_machine):
    def setup(s):
        s.serve("/a", redirect="/b/c", status=301)
        s.serve("/b/c", redirect="d", status=307)
        s.serve("/b/d", redirect="http://10.0.2.100/final", status=302)
        s.serve("/final", DATA)
    srv, out = download(fake_machine, "http://10.0.2.100/a", setup)
    _ok(out)
    assert [p for _, p, _ in srv.log] == ["/a", "/b/c", "/b/d", "/final"]
    assert out["d"].url == "http://10.0.2.100/final"


def test_redirect_loop_is_bounded(fake_machine):
    srv, out = download(fake_machine, "http://10.0.2.100/a", lambda s: s.serve("/a", redirect="/a"))
    assert "more than 5 redirects" in str(out["error"]) and len(srv.log) == 6


def test_404_is_final_and_names_url_and_status(fake_machine):
    srv, out = download(fake_machine, "http://10.0.2.100/nope", lambda s: s.serve("/f", DATA))
    e = out["error"]
    assert e.status == 404 and "http://10.0.2.100/nope: HTTP 404 Not Found" in str(e) and len(srv.log) == 1


def test_500_is_retried_a_bounded_number_of_times(fake_machine):
    srv, out = download(fake_machine, "http://10.0.2.100/f", lambda s: s.serve("/f", DATA, status=500))
    assert "giving up after 5 attempts" in str(out["error"]) and "HTTP 500" in str(out["error"])
    assert len(srv.log) == 5 and out["clock"] >= 1000 + 2000 + 4000 + 8000


def test_no_server_times_out_with_the_url(fake_machine):
    srv, out = download(fake_machine, "http://10.0.2.100:8080/f", lambda s: None)
    assert "http://10.0.2.100:8080/f" in str(out["error"]) and "connect to 10.0.2.100:8080" in str(out["error"])
    # the errno as every agent message gives it (failure.oserror_text)
    timed_out = "errno %d: %s" % (errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
    assert timed_out in str(out["error"]), out["error"]


def test_size_check_refuses_before_the_body(fake_machine):
    def check(total):
        raise http.HttpError("too big: %d" % total)
    srv, out = download(fake_machine, "http://10.0.2.100/f",
                        lambda s: s.serve("/f", DATA, content_length=1 << 40), check_size=check)
    assert str(out["error"]) == "too big: %d" % (1 << 40)


def test_body_longer_than_announced(fake_machine):
    srv, out = download(fake_machine, "http://10.0.2.100/f", lambda s: s.serve("/f", DATA, content_length=10))
    _ok(out, DATA[:10])     # the body ends at Content-Length; the rest of the connection is not read


# ---- throughput: a buffer per pass; the timeout and retry knobs (rd.live.http.timeout= / .retries=) -----------

def test_the_body_comes_a_buffer_at_a_time_and_the_last_pass_waits_only_for_what_is_due(fake_machine):
    # A silent server (QEMU's guestfwd: no close after the body): a last pass that asked for more than the bytes
    # still due would wait for the read timeout instead of returning.
    def setup(s):
        s.silent = True
        s.serve("/f", DATA)
    srv, out = download(fake_machine, "http://10.0.2.100/f", setup)
    _ok(out)
    assert out["d"].attempts == 1 and out["clock"] < 1000, (out["d"].tried, out["clock"])
    # the fake's sockets hand out at most 64 KiB per recv: the head's read brought the first 64 KiB of the body,
    # and one pass of the loop took the other 236 KiB (four recvs inside syscalls.recv_fill)
    assert out["d"].reads == 1, out["d"].reads
    assert out["net"].rcvlowat_log == []    # no SO_RCVLOWAT: the queue is taken at every wake-up


@pytest.mark.parametrize("timeout_ms", [None, 3000])
def test_a_stall_mid_body_keeps_what_came_and_resumes_after_one_idle_timeout(fake_machine, timeout_ms):
    def setup(s):
        s.silent = True     # the drop is silence: no close, no reset
        s.serve("/f", DATA, drop_after=100000)
    srv, out = download(fake_machine, "http://10.0.2.100/f", setup, timeout_ms=timeout_ms)
    _ok(out)
    first_range = srv.log[1][2]
    assert 90000 < int(first_range[6:-1]) <= 100000, srv.log     # the bytes before the stall were kept
    assert out["d"].attempts == 2 and any("no data for" in t for t in out["d"].tried), out["d"].tried
    idle = timeout_ms or http._IDLE_MS
    assert idle <= out["clock"] < idle + 1000, out["clock"]          # one stall limit, not two


def test_a_write_that_fails_mid_body_names_the_file_and_is_not_retried(fake_machine):
    def setup(s):
        s.serve("/f", DATA)

    def full(m):
        # the tmpfs fills up in the second write of the body to /tmp/out (fd of the output file, not a socket)
        m.fail("write", errno.ENOSPC, when=lambda fd, data: fd < 100 and len(data) > 1000, skip=1)
    srv, out = download(fake_machine, "http://10.0.2.100/f", setup, before=full)
    e = out["error"]
    assert "writing /tmp/out: errno %d: %s" % (errno.ENOSPC, os.strerror(errno.ENOSPC)) in str(e), e
    assert len(srv.log) == 1        # a full disk is not a network fault: no second request


def test_no_server_with_a_short_timeout_and_one_retry(fake_machine):
    srv, out = download(fake_machine, "http://10.0.2.100:8080/f", lambda s: None, timeout_ms=2000, retries=1)
    assert "giving up after 2 attempts" in str(out["error"])
    # two connects of 2 s and one pause of 1 s; the defaults take 5 x 10 s + 1 + 2 + 4 + 8 s
    assert 5000 <= out["clock"] < 6000, out["clock"]


def test_retries_zero_is_one_attempt(fake_machine):
    srv, out = download(fake_machine, "http://10.0.2.100/f", lambda s: s.serve("/f", DATA, status=500), retries=0)
    assert "giving up after 1 attempts" in str(out["error"]) and len(srv.log) == 1


def test_silent_stall_is_resumed_after_the_timeout(fake_machine):
    def setup(s):
        s.silent = True
        s.serve("/f", DATA, drop_after=100000)
    srv, out = download(fake_machine, "http://10.0.2.100/f", setup, timeout_ms=3000)
    _ok(out)
    ranges = [r for _, _, r in srv.log]
    # Bytes below the low-water mark when the stall began stay in the socket and are fetched again (<= 64 KiB).
    assert ranges[0] is None and len(ranges) == 2 and 100000 - 65536 <= int(ranges[1][6:-1]) <= 100000, ranges
    assert "no data for 3000 ms" in out["d"].tried[0]
    assert 3000 <= out["clock"] < 4000, out["clock"]        # the stall timeout, no pause: bytes had arrived


def test_default_stall_timeout_is_30_s(fake_machine):
    def setup(s):
        s.silent = True
        s.serve("/f", DATA, drop_after=100000)
    srv, out = download(fake_machine, "http://10.0.2.100/f", setup)
    _ok(out)
    assert 30000 <= out["clock"] < 31000, out["clock"]
