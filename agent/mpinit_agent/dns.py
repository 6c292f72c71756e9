# A stub resolver for one thing: the IPv4 address (A record, RFC 1035) of the host in the image URL, asked of the
# DNS servers from DHCP or ip= over UDP port 53.
#
# Each server is asked in turn, each attempt waiting _TIMEOUT_MS (resolv.conf(5) defaults: timeout 5 s, 2
# attempts; a boot waits less per try and tries every server). Answers follow CNAME chains inside the one
# response (what recursive servers send); a truncated response (TC) with no usable A record is an error, not a
# TCP retry: an honest subset, enough for a host name with a handful of addresses.
#
# parse_response() is a parser of untrusted bytes: it raises only DnsError (tests/test_dns.py fuzzes it).
import struct

from micropython import const

from . import syscalls as sc
from .failure import oserror_text

_TYPE_A = const(1)
_TYPE_CNAME = const(5)
_CLASS_IN = const(1)
_TIMEOUT_MS = const(2000)
_ATTEMPTS = const(2)
_MAX_NAME = const(255)      # RFC 1035 section 2.3.4
_MAX_POINTERS = const(32)   # compression pointers followed in one name before calling it a loop
RCODES = {1: "format error", 2: "server failure", 3: "no such name (NXDOMAIN)", 4: "not implemented",
          5: "refused"}


class DnsError(ValueError):
    """A malformed response, or a name that could not be resolved (the message says which and why)."""


def build_query(qid, name):
    """A standard query (RD set) for the A record of name."""
    name = name.rstrip(".")
    if not name or len(name) > 253:
        raise DnsError("bad host name %r" % name)
    out = bytearray(struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0))
    for label in name.split("."):
        b = label.encode()
        if not 0 < len(b) < 64:
            raise DnsError("bad host name %r: labels are 1..63 bytes" % name)
        out.append(len(b))
        out += b
    out += b"\0" + struct.pack("!HH", _TYPE_A, _CLASS_IN)
    return bytes(out)


def read_name(data, off):
    """(name, offset after the name in place) with compression pointers (RFC 1035 section 4.1.4) followed."""
    labels = []
    end = None
    jumps = 0
    total = 0
    n = len(data)
    while True:
        if off >= n:
            raise DnsError("name runs past the end of the message")
        length = data[off]
        if length & 0xC0 == 0xC0:
            if off + 1 >= n:
                raise DnsError("truncated compression pointer")
            if end is None:
                end = off + 2
            jumps += 1
            if jumps > _MAX_POINTERS:
                raise DnsError("compression pointer loop")
            off = ((length & 0x3F) << 8) | data[off + 1]
            continue
        if length & 0xC0:
            raise DnsError("unknown label type 0x%02x" % length)
        off += 1
        if length == 0:
            break
        if off + length > n:
            raise DnsError("label runs past the end of the message")
        total += length + 1
        if total > _MAX_NAME:
            raise DnsError("name longer than 255 bytes")
        labels.append(bytes(data[off:off + length]).decode("latin-1"))  # bytes as they are: no UnicodeError
        off += length
    return ".".join(labels).lower(), (end if end is not None else off)


def parse_response(data, qid, name):
    """The IPv4 addresses for name in a response to query qid. DnsError for a malformed response, a wrong id, an
    error rcode or no address."""
    try:
        data = bytes(data)
    except TypeError:
        raise DnsError("not bytes")
    if len(data) < 12:
        raise DnsError("response of %d bytes is shorter than a DNS header" % len(data))
    rid, flags, qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", data, 0)
    if rid != qid:
        raise DnsError("response id %d does not match the query's %d" % (rid, qid))
    if not flags & 0x8000:
        raise DnsError("not a response (QR clear)")
    rcode = flags & 0xF
    if rcode:
        raise DnsError("server says %s" % RCODES.get(rcode, "error %d" % rcode))
    off = 12
    for _ in range(qd):
        _q, off = read_name(data, off)
        off += 4
        if off > len(data):
            raise DnsError("question runs past the end of the message")
    wanted = [name.rstrip(".").lower()]
    addrs = []
    for _ in range(an):
        owner, off = read_name(data, off)
        if off + 10 > len(data):
            raise DnsError("answer record header runs past the end of the message")
        rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, off)
        off += 10
        if off + rdlen > len(data):
            raise DnsError("answer record data runs past the end of the message")
        if rclass == _CLASS_IN and owner in wanted:
            if rtype == _TYPE_A:
                if rdlen != 4:
                    raise DnsError("A record of length %d" % rdlen)
                addrs.append("%d.%d.%d.%d" % (data[off], data[off + 1], data[off + 2], data[off + 3]))
            elif rtype == _TYPE_CNAME:
                target, _ = read_name(data, off)
                wanted.append(target)
        off += rdlen
    if not addrs:
        if flags & 0x0200:
            raise DnsError("truncated response (TC) without an address; DNS over TCP is not supported")
        raise DnsError("no A record for %s in the answer" % name)
    return addrs


def resolve(name, servers, tried=None):
    """The addresses of name, asking each server in turn (_ATTEMPTS rounds). DnsError naming the name and what
    each server asked said, when none gave an address; `tried` (a list) collects one line per attempt for the
    failure report. NXDOMAIN is final at once (RFC 1034 section 4.3.1: the name does not exist, another server
    would say the same); a timeout, a server failure or a malformed answer moves on to the next server."""
    from .netconf import random_bytes  # not os.urandom: that waits for the kernel's CRNG early in a boot

    if tried is None:
        tried = []
    if not servers:
        raise DnsError("cannot resolve %s: no DNS server (none from DHCP; give one in ip=...:<dns0>)" % name)
    said = {}           # server -> what it said last, in the order asked
    asked = []
    for _ in range(_ATTEMPTS):
        for server in servers:
            if server not in asked:
                asked.append(server)
            answer, why = _ask(server, name, random_bytes)
            if answer:
                tried.append("DNS %s: %s is %s" % (server, name, ", ".join(answer)))
                return answer
            said[server] = why
            tried.append("DNS %s for %s: %s" % (server, name, why))
            if "NXDOMAIN" in why:
                raise DnsError("cannot resolve %s: %s" % (name, _summary(asked, said)))
    raise DnsError("cannot resolve %s: %s" % (name, _summary(asked, said)))


def _summary(asked, said):
    return "; ".join(["%s: %s" % (s, said[s]) for s in asked])


def _ask(server, name, random_bytes):
    """One query to one server: (addresses, None) or (None, what went wrong)."""
    qid = struct.unpack("!H", random_bytes(2))[0]
    query = build_query(qid, name)
    fd = sc.socket(sc.AF_INET, sc.SOCK_DGRAM, sc.IPPROTO_UDP)
    try:
        try:
            sc.sendto(fd, query, (server, 53))
        except OSError as e:
            return None, oserror_text(e)
        until = sc.uptime_ms() + _TIMEOUT_MS
        while True:
            left = until - sc.uptime_ms()
            if left <= 0 or not sc.poll(fd, sc.POLLIN, left) & sc.POLLIN:
                return None, "no answer within %d ms" % _TIMEOUT_MS
            data, src = sc.recvfrom(fd, 1500)
            if src is not None and src[0] != server:
                continue    # not from the server we asked
            try:
                return parse_response(data, qid, name), None
            except DnsError as e:
                if "does not match" in str(e):
                    continue    # a late answer to an earlier query
                return None, str(e)
    finally:
        sc.close(fd)
