# An HTTP/1.1 client for one job: GET a (large) file into a file, over the syscall boundary's TCP sockets.
#
# RFC 9112 (message syntax, chunked transfer coding), RFC 9110 (status codes, Range / Content-Range / If-Range,
# redirects). What it does:
#   - GET with "Connection: close": one request per connection, the body ends at Content-Length, at the end of
#     the chunked coding, or (neither given) when the server closes;
#   - redirects 301/302/303/307/308, at most _MAX_REDIRECTS, Location resolved against the current URL;
#   - a dropped connection (EOF or an error before the body is complete) is resumed with "Range: bytes=<done>-"
#     and If-Range (the ETag, else Last-Modified), so a file changed on the server restarts from 0 instead of
#     being spliced; a 200 answer to a Range request (server without ranges, or a changed file) restarts too;
#   - bounded retries: `retries` more attempts after a failed one without progress (connect errors, timeouts,
#     drops, 5xx; default _RETRIES, rd.live.http.retries=), waiting 1, 2, 4, 8 s between them (never longer than
#     the timeout); a 4xx is final at once;
#   - timeouts: connect, the answer to a request and a stall in the body each give up after their own default
#     (_CONNECT_MS, _HEAD_MS, _IDLE_MS), or all after `timeout_ms` when given (rd.live.http.timeout=);
#   - errors name the URL and the HTTP status line.
# The body goes through one preallocated buffer (recv_fill + write, no per-read allocation), optionally into a
# hash (the pinned or published digest, checked without reading the file again) and a progress line.
#
# Throughput: the body is received by syscalls.recv_fill(), which waits and takes what is queued at every wake-up
# in C, as a blocking read loop does, and comes back once the buffer is full (or the body's last bytes are in): the
# Python loop (write, hash update, progress) runs once per _BUF bytes, and the socket's receive queue stays short.
# Measured on a 256 MiB download under TCG (bench, -smp 1): one recv_into per wake-up from Python 54 MB/s (0.5 s of
# the guest's CPU in Python); SO_RCVLOWAT 64 KiB 50 MB/s (the queue grows to the mark before each read: 2.7 s of
# softirq against 1.8 s); a 4 MiB SO_RCVBUF with it 42-45 MB/s; recv_fill 52-54 MB/s, and 58-59 MB/s when it also
# writes each piece to the file as it arrives (busybox wget: 58-61 MB/s). Near the end of a body of known length it
# waits for the bytes still due only, never for bytes that will not come (behind QEMU's guestfwd no close comes).
#
# parse_head() and ChunkDecoder parse untrusted bytes: they raise only HttpError (tests/test_http.py fuzzes them).
from micropython import const

from . import netconf
from . import syscalls as sc
from .failure import oserror_text

_BUF = const(262144)         # the body buffer: received whole before the Python loop runs (see the top of the file)
_STALL = "no data for %d ms"   # the body's stall limit ran out (_IDLE_MS, or timeout_ms)
_MAX_HEAD = const(16384)
_MAX_REDIRECTS = const(5)
_RETRIES = const(4)          # attempts after a failed one without progress (5 in all, like before)
_CONNECT_MS = const(10000)
_IDLE_MS = const(30000)      # no byte for this long in the body: the connection is dead
_HEAD_MS = const(10000)      # no answer to the request for this long: the server is not serving (a static file
                             # answers at once; QEMU's guestfwd with no server behind it accepts and stays silent)
_PROGRESS_MS = const(500)
_MiB = const(1 << 20)


class HttpError(ValueError):
    """A malformed response, or a download that failed for good. .url and .status (None: no HTTP answer)."""

    def __init__(self, msg, url=None, status=None):
        super().__init__(msg)
        self.url = url
        self.status = status


class _Retry(Exception):
    """One attempt failed in a way another attempt may fix (drop, timeout, 5xx)."""


# ---- parsing ---------------------------------------------------------------------------------------------------

def parse_head(data):
    """(status, reason, headers) of a response head (the bytes before the blank line); header names lower-case,
    repeated headers joined with ", " (RFC 9110 section 5.3). Raises only HttpError."""
    try:
        text = bytes(data).decode("latin-1")  # RFC 9112 section 2.2: octets, any byte maps to a character
    except (TypeError, ValueError):
        raise HttpError("response head is not bytes")
    lines = text.split("\r\n")
    first = lines[0]
    if not first.startswith("HTTP/1.") or len(first) < 12 or first[8] != " ":
        raise HttpError("not an HTTP/1.x status line: %r" % first[:80])
    code = first[9:12]
    if not ("0" <= code[0] <= "9" and "0" <= code[1] <= "9" and "0" <= code[2] <= "9"):
        raise HttpError("bad status code in %r" % first[:80])
    status = int(code)
    if status < 100:
        raise HttpError("bad status code in %r" % first[:80])
    reason = first[13:].strip() if len(first) > 12 else ""
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        colon = line.find(":")
        if colon <= 0 or line[0] in " \t":
            raise HttpError("malformed header line %r" % line[:80])
        name = line[:colon].strip().lower()
        value = line[colon + 1:].strip()
        headers[name] = headers[name] + ", " + value if name in headers else value
    return status, reason, headers


def content_length(headers):
    """Content-Length as an int, None when absent; HttpError for a bad or conflicting value."""
    v = headers.get("content-length")
    if v is None:
        return None
    values = [x.strip() for x in v.split(",")]
    for x in values:
        if not x or not x.isdigit() or len(x) > 18:
            raise HttpError("bad Content-Length %r" % v)
    if len(set(values)) != 1:
        raise HttpError("conflicting Content-Length values %r" % v)
    return int(values[0])


def content_range(headers):
    """(first, last, total) of "Content-Range: bytes first-last/total" (total None for "*"); HttpError."""
    v = headers.get("content-range", "")
    if not v.startswith("bytes ") or "/" not in v or "-" not in v:
        raise HttpError("bad Content-Range %r" % v)
    span, total = v[6:].split("/", 1)
    first, last = span.split("-", 1)
    for x in (first, last):
        if not x.strip().isdigit():
            raise HttpError("bad Content-Range %r" % v)
    total = total.strip()
    if total != "*" and not total.isdigit():
        raise HttpError("bad Content-Range %r" % v)
    first, last = int(first), int(last)
    if last < first:
        raise HttpError("bad Content-Range %r" % v)
    return first, last, (None if total == "*" else int(total))


def is_chunked(headers):
    te = headers.get("transfer-encoding", "").lower()
    if not te:
        return False
    codings = [c.strip() for c in te.split(",")]
    if codings[-1] != "chunked":
        raise HttpError("unsupported Transfer-Encoding %r" % te)
    if len(codings) > 1:
        raise HttpError("unsupported Transfer-Encoding %r (compressed transfer codings)" % te)
    return True


class ChunkDecoder:
    """The chunked transfer coding (RFC 9112 section 7.1) as a push parser: feed(mv) returns the list of body
    pieces (memoryview slices of mv) it held; .done once the last chunk and the trailer section are read.
    Chunk extensions and trailers are skipped. Raises only HttpError."""

    def __init__(self):
        self.state = 0          # 0: size line, 1: data, 2: the CRLF after data, 3: trailer section
        self.line = bytearray()
        self.left = 0
        self.done = False

    def feed(self, mv):
        out = []
        i = 0
        n = len(mv)
        while i < n and not self.done:
            if self.state == 1:  # _DATA
                take = min(self.left, n - i)
                out.append(mv[i:i + take])
                i += take
                self.left -= take
                if self.left == 0:
                    self.state = 2
                continue
            # line-oriented states: collect up to LF
            j = i
            while j < n and mv[j] != 10:
                j += 1
            self.line += mv[i:j]
            if len(self.line) > 4096:
                raise HttpError("chunked coding: line longer than 4096 bytes")
            if j >= n:
                break
            i = j + 1
            line = bytes(self.line)
            self.line = bytearray()
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.state == 0:
                size = line.split(b";", 1)[0].strip()
                if not size or len(size) > 15:
                    raise HttpError("chunked coding: bad chunk size line %r" % line[:40])
                try:
                    self.left = int(size, 16)
                except ValueError:
                    raise HttpError("chunked coding: bad chunk size %r" % size[:40])
                if self.left < 0:
                    raise HttpError("chunked coding: bad chunk size %r" % size[:40])
                self.state = 3 if self.left == 0 else 1
            elif self.state == 2:
                if line:
                    raise HttpError("chunked coding: chunk data longer than its size")
                self.state = 0
            else:  # trailer section: ends with an empty line
                if not line:
                    self.done = True
        return out


# ---- the download ----------------------------------------------------------------------------------------------

class Download:
    """GET url into path. resolve(host) -> IPv4 string (DNS through the caller's servers); check_size(total) is
    called once the full size is known, before the body is written (raise to refuse); new_hash() -> an object
    with update(), or None; label names the progress line ("mpinit: <label>: ...")."""

    def __init__(self, url, path, resolve=None, check_size=None, new_hash=None, label="fetch", quiet=False,
                 timeout_ms=None, retries=None):
        self.url = url              # the current URL (after redirects)
        self.first_url = url
        self.path = path
        self.resolve = resolve
        self.check_size = check_size
        self.new_hash = new_hash
        self.hash = None
        self.label = label
        self.quiet = quiet
        # rd.live.http.timeout= sets one timeout for connect, answer and stall; None keeps the three defaults.
        self.connect_ms = timeout_ms or _CONNECT_MS
        self.head_ms = timeout_ms or _HEAD_MS
        self.idle_ms = timeout_ms or _IDLE_MS
        self.retries = _RETRIES if retries is None else retries
        self.done = 0
        self.total = None
        self.validator = None       # ETag or Last-Modified of the file being fetched, for If-Range
        self.redirects = 0
        self.attempts = 0
        self.resumed = 0
        self.reads = 0              # passes of the body loop, one per buffer received (see the top)
        self.tried = []             # one line per attempt that failed, for the failure report
        self.buf = None
        self._checked = False
        self._start = 0
        self._last_progress = 0

    def run(self):
        """Fetch until complete; returns self (done == total). HttpError when it cannot."""
        self.buf = bytearray(_BUF)
        self._start = sc.uptime_ms()
        fails = 0
        wait = 1000
        while True:
            self.attempts += 1
            before = self.done
            try:
                if self._attempt():
                    self._progress(True)
                    return self
            except _Retry as e:
                self.tried.append("%s (at byte %d): %s" % (self.url, self.done, e))
                if self.done > before:
                    fails = 0
                    wait = 1000
                else:
                    fails += 1
                if fails > self.retries:
                    raise HttpError("%s: giving up after %d attempts: %s" % (self.first_url, self.attempts, e),
                                    self.url)
                if self.done == before:
                    sc.sleep_ms(min(wait, self.idle_ms))
                    wait = min(wait * 2, 8000)
                if self.done:
                    self.resumed += 1

    def _open_out(self, append):
        flags = sc.O_WRONLY | sc.O_CREAT | sc.O_CLOEXEC | (sc.O_APPEND if append else sc.O_TRUNC)
        return sc.open(self.path, flags, 0o644)

    def _restart(self):
        self.done = 0
        self.hash = self.new_hash() if self.new_hash is not None else None

    def _attempt(self):
        """One connection. True when the file is complete; "redirect" loops inside; _Retry or HttpError else."""
        while True:
            scheme, host, port, path = netconf.parse_url(self.url)
            ip = host
            if not netconf.is_ipv4(host):
                if self.resolve is None:
                    raise HttpError("%s: cannot resolve %s: no resolver" % (self.url, host), self.url)
                ip = self.resolve(host)
            try:
                fd = sc.socket(sc.AF_INET, sc.SOCK_STREAM, sc.IPPROTO_TCP)
            except OSError as e:
                raise HttpError("%s: socket: %s" % (self.url, oserror_text(e)), self.url)
            try:
                location = self._exchange(fd, ip, host, port, path)
            finally:
                sc.close(fd)
            if location is None:
                return True
            self.redirects += 1
            if self.redirects > _MAX_REDIRECTS:
                raise HttpError("%s: more than %d redirects (last to %s)" % (self.first_url, _MAX_REDIRECTS,
                                                                            location), self.url)
            self.url = netconf.join_url(self.url, location)
            netconf.parse_url(self.url)  # a redirect to https:// or garbage fails here, naming it
            self._restart()
            self.validator = None
            self.total = None

    def _exchange(self, fd, ip, host, port, path):
        """Connect, send the request, read the answer. None when complete, a Location for a redirect."""
        try:
            sc.connect(fd, (ip, port), self.connect_ms)
        except OSError as e:
            raise _Retry("connect to %s:%d: %s" % (ip, port, oserror_text(e)))
        req = "GET %s HTTP/1.1\r\nHost: %s%s\r\nUser-Agent: mpinit\r\nAccept: */*\r\nConnection: close\r\n" % (
            path, host, "" if port == 80 else ":%d" % port)
        if self.done:
            req += "Range: bytes=%d-\r\n" % self.done
            if self.validator:
                req += "If-Range: %s\r\n" % self.validator
        req += "\r\n"
        data = req.encode()
        sent = 0
        try:
            while sent < len(data):
                sent += sc.sendto(fd, data[sent:])
        except OSError as e:
            raise _Retry("sending the request: %s" % oserror_text(e))
        head, have = self._read_head(fd)
        status, reason, headers = parse_head(head)
        if status in (301, 302, 303, 307, 308):
            loc = headers.get("location")
            if not loc:
                raise HttpError("%s: HTTP %d %s without a Location" % (self.url, status, reason), self.url, status)
            return loc
        if status >= 500:
            raise _Retry("HTTP %d %s" % (status, reason))
        if status >= 400 or status not in (200, 206):
            raise HttpError("%s: HTTP %d %s" % (self.url, status, reason), self.url, status)
        chunked = is_chunked(headers)
        length = None if chunked else content_length(headers)
        if status == 206:
            if not self.done:
                raise HttpError("%s: HTTP 206 to a request without Range" % self.url, self.url, status)
            first, last, total = content_range(headers)
            if first != self.done:
                raise HttpError("%s: asked for bytes from %d, got Content-Range from %d" % (self.url, self.done,
                                                                                         first), self.url, status)
            if total is not None:
                self._set_total(total)
            append = True
        else:
            if self.done:
                # The server sent the whole file again (no ranges, or it changed): start over.
                self.tried.append("%s: HTTP 200 to a Range request: restarting from byte 0" % self.url)
            self._restart()
            self.validator = headers.get("etag") or headers.get("last-modified")
            if length is not None:
                self._set_total(length)
            append = False
        if self.hash is None and self.new_hash is not None and not self.done:
            self.hash = self.new_hash()
        out = self._open_out(append)
        try:
            self._body(fd, out, have, chunked, length)
        finally:
            sc.close(out)
        return None

    def _set_total(self, total):
        if self.total is not None and total != self.total:
            raise HttpError("%s: the size changed from %d to %d bytes between requests" % (self.url, self.total,
                                                                                         total), self.url)
        self.total = total
        if not self._checked and self.check_size is not None:
            self._checked = True
            self.check_size(total)

    def _fill(self, fd, mv, want, out=-1, timeout_ms=None, what=_STALL):
        """syscalls.recv_fill() with a timeout (default: the body's stall limit), writing to out as the bytes
        arrive (out < 0: not); 0 at EOF; _Retry (`what`) when nothing came or the connection failed, HttpError when
        writing failed."""
        if timeout_ms is None:
            timeout_ms = self.idle_ms
        try:
            return sc.recv_fill(fd, mv, want, timeout_ms, out)
        except OSError as e:
            if out >= 0 and len(e.args) > 1 and e.args[1] == out:  # OSError(errno, out_fd): the write failed
                raise HttpError("%s: writing %s: %s" % (self.url, self.path, oserror_text(OSError(e.args[0]))),
                                self.url)
            if e.args and e.args[0] == sc.ETIMEDOUT:
                raise _Retry(what % timeout_ms)
            raise _Retry("receiving: %s" % oserror_text(e))

    def _read_head(self, fd):
        """The response head, and the number of body bytes already read (left at the start of self.buf)."""
        got = bytearray()
        mv = memoryview(self.buf)
        while True:
            n = self._fill(fd, mv, 1, timeout_ms=self.head_ms, what="no answer within %d ms")
            if n == 0:
                if got:
                    raise _Retry("the server closed the connection inside the response head")
                raise _Retry("the server closed the connection without an answer")
            got += mv[:n]
            end = got.find(b"\r\n\r\n")
            if end >= 0:
                rest = got[end + 4:]
                self.buf[:len(rest)] = rest
                return bytes(got[:end]), len(rest)
            if len(got) > _MAX_HEAD:
                raise HttpError("%s: response head longer than %d bytes" % (self.url, _MAX_HEAD), self.url)

    def _write(self, out, piece):
        """Count, hash and write a piece of the body (out < 0: recv_fill() has written it already)."""
        n = len(piece)
        if not n:
            return
        if self.total is not None and self.done + n > self.total:
            raise HttpError("%s: the server sent more than the %d bytes it announced" % (self.url, self.total),
                            self.url)
        w = n if out < 0 else 0
        while w < n:
            try:
                w += sc.write(out, piece[w:] if w else piece)  # no slice object for the usual whole write
            except OSError as e:
                raise HttpError("%s: writing %s: %s" % (self.url, self.path, oserror_text(e)), self.url)
        if self.hash is not None:
            self.hash.update(piece)
        self.done += n
        self._progress(False)

    def _body(self, fd, out, have, chunked, length):
        mv = memoryview(self.buf)
        decoder = ChunkDecoder() if chunked else None
        end = None
        if length is not None:
            end = self.done + length
        pending = have
        stalled = False
        # A plain body is written by recv_fill() as it arrives; a chunked one is decoded here first. The head's
        # read may hold the first body bytes, which are written here either way.
        direct = out if decoder is None else -1
        in_file = False
        while True:
            if pending:
                data = mv[:pending]
                pending = 0
                if decoder is not None:
                    for piece in decoder.feed(data):
                        self._write(out, piece)
                    if decoder.done:
                        return
                else:
                    if end is not None and self.done + len(data) > end:
                        data = data[:end - self.done]
                    self._write(-1 if in_file else out, data)
            if end is not None and self.done >= end:
                return
            if stalled:
                raise _Retry(_STALL % self.idle_ms)
            # A chunked body's end is in the data, not a byte count we could wait for: take what comes.
            want = 1 if decoder is not None else (_BUF if end is None else min(_BUF, end - self.done))
            n = self._fill(fd, mv, want, direct)
            self.reads += 1
            in_file = direct >= 0
            if n < 0:
                n = -n
                stalled = True      # the bytes that came before the stall are kept (the resume starts after them)
            elif n == 0:
                if decoder is None and end is None:
                    return  # neither length nor chunks: the body ends when the server closes
                raise _Retry("the connection closed after %d of %s bytes" % (
                    self.done, "?" if self.total is None else "%d" % self.total))
            pending = n

    def _progress(self, final):
        if self.quiet:
            return
        now = sc.uptime_ms()
        if not final and now - self._last_progress < _PROGRESS_MS:
            return
        self._last_progress = now
        from .toram import _console, progress_line  # the toram copy's console line, same format

        elapsed = now - self._start
        if self.total:
            line = progress_line(self.done, self.total, elapsed, self.label)
        else:
            rate = (self.done * 1000 // elapsed) if elapsed > 0 else 0
            line = "mpinit: %s: %d MiB %d.%d MB/s" % (self.label, self.done // _MiB, rate // 1000000,
                                                     (rate // 100000) % 10)
        _console("\r" + line, "\n" if final else "")
