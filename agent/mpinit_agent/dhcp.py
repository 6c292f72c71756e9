# Our own DHCPv4 client (RFC 2131, options from RFC 2132): DISCOVER -> OFFER -> REQUEST -> ACK on one interface.
#
# The client has no address yet, so it talks over a UDP socket bound to 0.0.0.0:68 and tied to the interface
# (SO_BINDTODEVICE), sending to 255.255.255.255:67 with SO_BROADCAST; the kernel routes a limited broadcast out of
# the bound device without any address or route (ip_route_output_key_hash_rcu() in net/ipv4/route.c). The
# broadcast flag is set (RFC 2131 section 4.1: a client that cannot receive unicast IP datagrams before its
# address is configured sets it), so the server's replies come to 255.255.255.255:68, which the kernel delivers
# to the bound socket.
#
# Retransmission: RFC 2131 section 4.1 suggests 4 s doubling to 64 s with +-1 s of randomisation; a boot starts
# lower, as udhcpc does (3 s): 1 s, 2 s, 4 s, 8 s, 8 s ..., each plus up to 0.5 s of jitter, until the caller's
# deadline. The lease time is recorded, not renewed: the lease only has to outlive the boot (the live system's
# own network manager takes over from there).
#
# parse() is a parser of untrusted bytes: it raises only DhcpError (tests/test_dhcp.py fuzzes it).
import struct

from micropython import const

from . import log
from . import syscalls as sc

CLIENT_PORT = const(68)
SERVER_PORT = const(67)
_MAGIC = b"\x63\x82\x53\x63"    # RFC 2131 section 3: the options field starts with 99.130.83.99
_BOOTREQUEST = const(1)
_BOOTREPLY = const(2)
_FLAG_BROADCAST = const(0x8000)
_MIN_LEN = const(300)           # RFC 1542 section 3.3: BOOTP relays/servers may drop anything shorter
_HEADER = const(236)            # op .. file, before the magic cookie

DISCOVER = const(1)
OFFER = const(2)
REQUEST = const(3)
DECLINE = const(4)
ACK = const(5)
NAK = const(6)
RELEASE = const(7)
TYPE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
              8: "INFORM"}

# RFC 2132 option codes
OPT_PAD = const(0)
OPT_SUBNET = const(1)
OPT_ROUTER = const(3)
OPT_DNS = const(6)
OPT_HOSTNAME = const(12)
OPT_DOMAIN = const(15)
OPT_REQUESTED_IP = const(50)
OPT_LEASE = const(51)
OPT_MSG_TYPE = const(53)
OPT_SERVER_ID = const(54)
OPT_PARAMS = const(55)
OPT_MAX_SIZE = const(57)
OPT_CLIENT_ID = const(61)
OPT_END = const(255)

_FIRST_WAIT_MS = const(1000)
_MAX_WAIT_MS = const(8000)
_JITTER_MS = const(500)


class DhcpError(ValueError):
    """A malformed or unusable DHCP packet (parse), or no lease (Client.run)."""


def _ip(b):
    return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])


def _ip_bytes(s):
    out = bytearray(4)
    i = 0
    for p in s.split("."):
        out[i] = int(p)
        i += 1
    return bytes(out)


def build(msg_type, xid, mac, requested=None, server_id=None, secs=0, hostname=None):
    """A client packet (DISCOVER or REQUEST) as bytes: broadcast flag set, our MAC as chaddr and client
    identifier (type 1 = Ethernet, RFC 2132 section 9.14), a parameter request list, padded to 300 bytes."""
    pkt = bytearray(_HEADER)
    pkt[0] = _BOOTREQUEST
    pkt[1] = 1          # htype: Ethernet (RFC 1700 ARP hardware types)
    pkt[2] = 6          # hlen
    struct.pack_into("!IHH", pkt, 4, xid, secs & 0xFFFF, _FLAG_BROADCAST)
    pkt[28:34] = mac
    opts = bytearray(_MAGIC)
    opts += bytes((OPT_MSG_TYPE, 1, msg_type))
    opts += bytes((OPT_CLIENT_ID, 7, 1)) + mac
    if requested:
        opts += bytes((OPT_REQUESTED_IP, 4)) + _ip_bytes(requested)
    if server_id:
        opts += bytes((OPT_SERVER_ID, 4)) + _ip_bytes(server_id)
    if hostname:
        name = hostname.encode()[:63]
        opts += bytes((OPT_HOSTNAME, len(name))) + name
    opts += bytes((OPT_MAX_SIZE, 2, 0x05, 0xDC))    # 1500: an Ethernet MTU's worth
    want = (OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN, OPT_LEASE, OPT_SERVER_ID)
    opts += bytes((OPT_PARAMS, len(want))) + bytes(want)
    opts.append(OPT_END)
    pkt += opts
    if len(pkt) < _MIN_LEN:
        pkt += bytes(_MIN_LEN - len(pkt))
    return bytes(pkt)


class Reply:
    """A parsed server packet: the fields and options a client uses."""

    def __init__(self):
        self.op = 0
        self.xid = 0
        self.flags = 0
        self.yiaddr = None
        self.siaddr = None
        self.chaddr = b""
        self.type = None        # DHCP message type (OFFER, ACK, NAK, ...)
        self.server_id = None
        self.netmask = None
        self.routers = []
        self.dns = []
        self.lease_s = None
        self.hostname = None
        self.domain = None
        self.options = {}       # code -> bytes, every option seen

    def __repr__(self):
        return "<DHCP %s xid=%08x yiaddr=%s server=%s>" % (TYPE_NAMES.get(self.type, self.type), self.xid,
                                                           self.yiaddr, self.server_id)


def _addrs(value, code):
    if len(value) == 0 or len(value) % 4:
        raise DhcpError("option %d: length %d is not a multiple of 4" % (code, len(value)))
    return [_ip(value[i:i + 4]) for i in range(0, len(value), 4)]


def _text(value, code):
    try:
        s = bytes(value).decode()
    except UnicodeError:
        raise DhcpError("option %d: not UTF-8 text" % code)
    s = s.rstrip("\0")    # some servers count a terminating NUL (RFC 2132 section 2 says they should not)
    for c in s:
        if ord(c) < 32 or ord(c) == 127:
            raise DhcpError("option %d: control characters in %r" % (code, s))
    return s


def parse(data):
    """A Reply from a received packet. Raises only DhcpError for a short, malformed or inconsistent packet.

    Options are read from the options field (RFC 2131 section 4.1); option overload into sname/file (option 52)
    is not followed: none of the options we use may be put there by a server we have met, so those are ignored."""
    try:
        mv = memoryview(data)
    except TypeError:
        raise DhcpError("not bytes")
    n = len(mv)
    if n < _HEADER + 4:
        raise DhcpError("packet of %d bytes is shorter than a DHCP header (240)" % n)
    if bytes(mv[_HEADER:_HEADER + 4]) != _MAGIC:
        raise DhcpError("no DHCP magic cookie (a plain BOOTP packet?)")
    r = Reply()
    r.op = mv[0]
    hlen = mv[2]
    if hlen > 16:
        raise DhcpError("hardware address length %d > 16" % hlen)
    r.xid, _secs, r.flags = struct.unpack_from("!IHH", data, 4)
    r.yiaddr = _ip(mv[16:20])
    r.siaddr = _ip(mv[20:24])
    r.chaddr = bytes(mv[28:28 + hlen])
    i = _HEADER + 4
    opts = r.options
    while i < n:
        code = mv[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            break
        if i + 1 >= n:
            raise DhcpError("option %d at offset %d has no length byte" % (code, i))
        length = mv[i + 1]
        if i + 2 + length > n:
            raise DhcpError("option %d at offset %d: length %d runs past the packet end" % (code, i, length))
        value = bytes(mv[i + 2:i + 2 + length])
        # RFC 3396: an option split over several instances is their concatenation.
        opts[code] = opts[code] + value if code in opts else value
        i += 2 + length
    t = opts.get(OPT_MSG_TYPE)
    if t is not None:
        if len(t) != 1:
            raise DhcpError("message type option of length %d" % len(t))
        r.type = t[0]
    v = opts.get(OPT_SERVER_ID)
    if v is not None:
        if len(v) != 4:
            raise DhcpError("server identifier of length %d" % len(v))
        r.server_id = _ip(v)
    v = opts.get(OPT_SUBNET)
    if v is not None:
        if len(v) != 4:
            raise DhcpError("subnet mask of length %d" % len(v))
        r.netmask = _ip(v)
    if OPT_ROUTER in opts:
        r.routers = _addrs(opts[OPT_ROUTER], OPT_ROUTER)
    if OPT_DNS in opts:
        r.dns = _addrs(opts[OPT_DNS], OPT_DNS)
    v = opts.get(OPT_LEASE)
    if v is not None:
        if len(v) != 4:
            raise DhcpError("lease time of length %d" % len(v))
        r.lease_s = struct.unpack("!I", v)[0]
    if OPT_HOSTNAME in opts:
        r.hostname = _text(opts[OPT_HOSTNAME], OPT_HOSTNAME)
    if OPT_DOMAIN in opts:
        r.domain = _text(opts[OPT_DOMAIN], OPT_DOMAIN)
    return r


class Lease:
    """What the ACK gave: address, netmask, router, DNS servers, lease time, names, and the server."""

    def __init__(self, ack, obtained_ms):
        self.address = ack.yiaddr
        self.netmask = ack.netmask
        self.router = ack.routers[0] if ack.routers else None
        self.dns = list(ack.dns)
        self.lease_s = ack.lease_s
        self.hostname = ack.hostname
        self.domain = ack.domain
        self.server = ack.server_id or ack.siaddr
        self.obtained_ms = obtained_ms


def _usable(r, xid, mac, want):
    """Whether a reply answers our request: a BOOTREPLY with our xid and chaddr, of the expected type."""
    return r.op == _BOOTREPLY and r.xid == xid and r.chaddr[:6] == mac and r.type in want


def _check_offer(r):
    if r.yiaddr == "0.0.0.0" or r.yiaddr.startswith("255.") or r.yiaddr.startswith("127."):
        return "offered address %s is not usable" % r.yiaddr
    if r.server_id is None:
        return "no server identifier (option 54; RFC 2131 table 3 makes it a MUST)"
    return None


class Client:
    """One DHCP exchange on one interface. run(deadline_ms) -> Lease, or DhcpError naming what was seen."""

    def __init__(self, ifname, mac, hostname=None):
        self.ifname = ifname
        self.mac = bytes(mac)
        self.hostname = hostname
        self.seen = []          # one line per packet sent or received, for the failure report

    def _xid(self):
        from .netconf import random_bytes  # not os.urandom: that waits for the kernel's CRNG early in a boot

        return struct.unpack("!I", random_bytes(4, self.mac))[0]

    def _jitter(self):
        from .netconf import random_bytes

        return random_bytes(1, self.mac)[0] * _JITTER_MS // 255

    def _socket(self):
        fd = sc.socket(sc.AF_INET, sc.SOCK_DGRAM, sc.IPPROTO_UDP)
        try:
            sc.setsockopt(fd, sc.SOL_SOCKET, sc.SO_REUSEADDR, 1)
            sc.setsockopt(fd, sc.SOL_SOCKET, sc.SO_BROADCAST, 1)
            sc.setsockopt(fd, sc.SOL_SOCKET, sc.SO_BINDTODEVICE, self.ifname)
            sc.bind(fd, ("0.0.0.0", CLIENT_PORT))
        except OSError:
            sc.close(fd)
            raise
        return fd

    def _send(self, fd, pkt, what):
        sc.sendto(fd, pkt, ("255.255.255.255", SERVER_PORT))
        self.seen.append("sent %s" % what)
        log.debug("dhcp: %s: sent %s (%d bytes)" % (self.ifname, what, len(pkt)))

    def _wait(self, fd, xid, want, until_ms):
        """The first usable reply of a type in want before until_ms, or None."""
        buf_n = 1500
        while True:
            left = until_ms - sc.uptime_ms()
            if left <= 0:
                return None
            if not sc.poll(fd, sc.POLLIN, left) & sc.POLLIN:
                continue
            data, src = sc.recvfrom(fd, buf_n)
            try:
                r = parse(data)
            except DhcpError as e:
                self.seen.append("ignored a malformed packet from %s: %s" % (src, e))
                continue
            if log._debug:  # the raw bytes, for a capture of a real server's replies (tests/test_dhcp.py)
                import binascii

                log.debug("dhcp: %s: received %r from %s, %d bytes:" % (self.ifname, r, src, len(data)))
                for i in range(0, len(data), 256):
                    log.debug("dhcp: hex %s" % binascii.hexlify(data[i:i + 256]).decode())
            if not _usable(r, xid, self.mac, want):
                continue
            self.seen.append("received %s from %s" % (TYPE_NAMES.get(r.type, r.type), r.server_id or src))
            return r

    def run(self, deadline_ms):
        """DISCOVER/OFFER/REQUEST/ACK until a lease or the deadline (an absolute uptime_ms; None: no limit)."""
        fd = self._socket()
        try:
            return self._run(fd, deadline_ms)
        finally:
            sc.close(fd)

    def _run(self, fd, deadline_ms):
        start = sc.uptime_ms()
        wait = _FIRST_WAIT_MS
        while True:
            xid = self._xid()
            secs = (sc.uptime_ms() - start) // 1000
            self._send(fd, build(DISCOVER, xid, self.mac, secs=secs, hostname=self.hostname), "DISCOVER")
            until = sc.uptime_ms() + wait + self._jitter()
            if deadline_ms is not None and until > deadline_ms:
                until = deadline_ms
            offer = self._wait(fd, xid, (OFFER,), until)
            if offer is not None:
                why = _check_offer(offer)
                if why:
                    self.seen.append("ignored the OFFER: %s" % why)
                    offer = None
            if offer is not None:
                ack = self._request(fd, xid, offer, start, deadline_ms)
                if ack is not None:
                    return Lease(ack, sc.uptime_ms())
                wait = _FIRST_WAIT_MS   # NAK or no answer: start over with a fresh DISCOVER
            elif wait < _MAX_WAIT_MS:
                wait *= 2
            if deadline_ms is not None and sc.uptime_ms() >= deadline_ms:
                raise DhcpError("no DHCP lease on %s" % self.ifname)

    def _request(self, fd, xid, offer, start, deadline_ms):
        """REQUEST the offered address (selecting state, RFC 2131 section 4.3.2); up to 3 sends. The ACK or None."""
        wait = _FIRST_WAIT_MS
        for _ in range(3):
            secs = (sc.uptime_ms() - start) // 1000
            self._send(fd, build(REQUEST, xid, self.mac, requested=offer.yiaddr, server_id=offer.server_id,
                                 secs=secs, hostname=self.hostname), "REQUEST for %s" % offer.yiaddr)
            until = sc.uptime_ms() + wait + self._jitter()
            if deadline_ms is not None and until > deadline_ms:
                until = deadline_ms
            r = self._wait(fd, xid, (ACK, NAK), until)
            if r is not None and r.type == NAK:
                self.seen.append("the server refused the address (NAK): starting over")
                return None
            if r is not None:
                if r.yiaddr != offer.yiaddr and r.yiaddr != "0.0.0.0":
                    self.seen.append("ACK for %s instead of %s: starting over" % (r.yiaddr, offer.yiaddr))
                    return None
                if r.netmask is None:
                    r.netmask = offer.netmask
                if not r.routers:
                    r.routers = offer.routers
                if not r.dns:
                    r.dns = offer.dns
                if r.yiaddr == "0.0.0.0":
                    r.yiaddr = offer.yiaddr
                return r
            if deadline_ms is not None and sc.uptime_ms() >= deadline_ms:
                return None
            wait *= 2
        return None
