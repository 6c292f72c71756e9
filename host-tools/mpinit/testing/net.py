"""The fake machine's network: NICs, a DHCP server, a DNS resolver and HTTP servers behind the socket and interface
calls of `mpinit_agent.syscalls` (socket, bind, connect, sendto, recvfrom, recv_into, recv_fill, setsockopt, poll,
if_*, route_add).

The servers are written here from the RFCs, independently of the agent's own client code (dhcp.py, dns.py,
http.py), so a fake-machine boot checks one implementation against another. Everything is synchronous and on the
virtual clock: a request's answer is queued on the socket at once; poll() with nothing to read advances the clock
by its timeout and returns 0.

User API (FakeMachine delegates): `m.add_nic(name, mac=, driver=, modalias=, carrier=True, carrier_after_ms=0,
appear_after_ms=0)`, `m.net.dhcp` (a DhcpServer; None switches it off), `m.net.dns_records[name] = ip`,
`m.add_http_server(ip, port=80)` -> HttpServer with `.serve(path, data, ...)`. See docs/fake-machine.md.
"""

from __future__ import annotations

import errno
import os as _real_os
import select as _select
import socket as _socket
import struct

from mpinit_agent import linux_abi as abi

_FD_BASE = 1000          # socket fds: far above pyfakefs's own file descriptors
_IFF_BROADCAST = 0x2     # include/uapi/linux/if.h (the agent never asks for it, so _linux does not export it)
BROADCAST = "255.255.255.255"
_MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 section 3


def _ip(s):
    return struct.unpack("!I", bytes(int(x) for x in s.split(".")))[0]


def _ipstr(n):
    return ".".join(str(b) for b in struct.pack("!I", n))


def _oserror(code, what=None):
    if what is None:
        return OSError(code, _real_os.strerror(code))
    return OSError(code, _real_os.strerror(code), what)


def _mac_bytes(mac):
    if isinstance(mac, (bytes, bytearray)):
        return bytes(mac)
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError("mac %r: want six hex bytes like 52:54:00:12:34:56" % (mac,))
    return bytes(int(p, 16) for p in parts)


class Nic:
    """One Ethernet interface. It exists once its driver is loaded (or at once when driver is None or built in),
    plus appear_after_ms; its carrier comes carrier_after_ms after the link is brought up (if carrier)."""

    def __init__(self, name, mac, index, driver, modalias, carrier, carrier_after_ms, appear_after_ms, devdir):
        self.name = name
        self.mac = _mac_bytes(mac)
        self.index = index
        self.driver = driver
        self.modalias = modalias
        self.carrier = carrier
        self.carrier_after_ms = carrier_after_ms
        self.appear_after_ms = appear_after_ms
        self.devdir = devdir
        self.flags = _IFF_BROADCAST
        self.up_since = None
        self.address = None
        self.netmask = None

    def running(self, clock):
        return (self.carrier and self.up_since is not None and clock >= self.up_since + self.carrier_after_ms)

    def on_subnet(self, ip):
        return self.address is not None and (_ip(ip) & _ip(self.netmask)) == (_ip(self.address) & _ip(self.netmask))


# ---- DHCP (RFC 2131 / RFC 2132) ---------------------------------------------------------------------------------

class DhcpServer:
    """A DHCPv4 server for one subnet, QEMU-slirp-like defaults (10.0.2.15 for the first client, server and router
    10.0.2.2, resolver 10.0.2.3). Scripting: ignore the first `ignore` DISCOVERs (client retries), NAK the first
    `nak` REQUESTs (client restarts), `router=None` / `dns=()` leave those options out. `log` lists the message
    types received ("DISCOVER", "REQUEST", ...) and `replies` the raw packets sent."""

    TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}

    def __init__(self, server="10.0.2.2", first="10.0.2.15", netmask="255.255.255.0", router="10.0.2.2",
                 dns=("10.0.2.3",), lease_s=86400, hostname=None, domain=None, ignore=0, nak=0):
        self.server = server
        self.first = first
        self.netmask = netmask
        self.router = router
        self.dns = tuple(dns)
        self.lease_s = lease_s
        self.hostname = hostname
        self.domain = domain
        self.ignore = ignore
        self.nak = nak
        self.leases = {}        # mac -> ip
        self.log = []
        self.replies = []

    @staticmethod
    def parse(packet):
        """(op, xid, flags, chaddr, {option: bytes}) of a BOOTP/DHCP packet; ValueError when malformed."""
        if len(packet) < 240 or packet[236:240] != _MAGIC_COOKIE:
            raise ValueError("not a DHCP packet")
        op, htype, hlen = packet[0], packet[1], packet[2]
        xid, _secs, flags = struct.unpack_from("!IHH", packet, 4)
        chaddr = bytes(packet[28:28 + hlen])
        opts = {}
        i = 240
        while i < len(packet):
            code = packet[i]
            if code == 255:
                break
            if code == 0:
                i += 1
                continue
            n = packet[i + 1]
            opts[code] = bytes(packet[i + 2:i + 2 + n])
            i += 2 + n
        return op, xid, flags, chaddr, opts

    def _reply(self, kind, xid, flags, chaddr, yiaddr):
        head = struct.pack("!BBBBIHHIIII", 2, 1, 6, 0, xid, 0, flags, 0, _ip(yiaddr) if yiaddr else 0,
                           _ip(self.server), 0)
        head += chaddr.ljust(16, b"\0") + bytes(64 + 128) + _MAGIC_COOKIE
        opts = [(53, bytes([kind])), (54, struct.pack("!I", _ip(self.server)))]
        if kind != 6:
            opts += [(51, struct.pack("!I", self.lease_s)), (1, struct.pack("!I", _ip(self.netmask)))]
            if self.router:
                opts.append((3, struct.pack("!I", _ip(self.router))))
            if self.dns:
                opts.append((6, b"".join(struct.pack("!I", _ip(d)) for d in self.dns)))
            if self.hostname:
                opts.append((12, self.hostname.encode()))
            if self.domain:
                opts.append((15, self.domain.encode()))
        body = b"".join(bytes([c, len(v)]) + v for c, v in opts) + b"\xff"
        pkt = (head + body).ljust(300, b"\0")
        self.replies.append(pkt)
        return pkt

    def handle(self, packet):
        """The replies (broadcast) to one client packet."""
        try:
            op, xid, flags, chaddr, opts = self.parse(packet)
        except (ValueError, IndexError):
            return []
        if op != 1 or 53 not in opts:
            return []
        kind = self.TYPES.get(opts[53][0], "?")
        self.log.append(kind)
        ip = self.leases.get(chaddr)
        if ip is None:
            ip = _ipstr(_ip(self.first) + len(self.leases))
            self.leases[chaddr] = ip
        if kind == "DISCOVER":
            if self.ignore > 0:
                self.ignore -= 1
                return []
            return [self._reply(2, xid, flags, chaddr, ip)]
        if kind == "REQUEST":
            if opts.get(54) not in (None, struct.pack("!I", _ip(self.server))):
                return []   # the client chose another server
            if self.nak > 0 or opts.get(50) not in (None, struct.pack("!I", _ip(ip))):
                self.nak = max(0, self.nak - 1)
                return [self._reply(6, xid, flags, chaddr, None)]
            return [self._reply(5, xid, flags, chaddr, ip)]
        return []


# ---- DNS (RFC 1035) ---------------------------------------------------------------------------------------------

def _dns_name(name):
    return b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"


def dns_answer(query, records, compress=True, cnames=None):
    """The response to one A query from {name: ip} (NXDOMAIN for other names); names in answers use a compression
    pointer to the question (offset 12) when compress. cnames {alias: target}: the chain from the asked name is
    answered in the one response, CNAME records first, then the A records of its end (what a recursive server
    sends, RFC 1034 section 3.6.2); a chain that ends in no A record is NXDOMAIN. None for a packet that is not
    a query."""
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack_from("!HHH", query, 0)
    if flags & 0x8000 or qd != 1:
        return None
    labels = []
    i = 12
    while query[i]:
        n = query[i]
        labels.append(query[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qend = i + 5
    name = ".".join(labels).lower()
    question = query[12:qend]
    cnames = {k.lower(): v.lower() for k, v in (cnames or {}).items()}
    answers = b""
    count = 0
    owner = b"\xc0\x0c" if compress else question[:-4]
    while name in cnames and count < 8:
        target = cnames[name]
        rdata = _dns_name(target)
        answers += owner + struct.pack("!HHIH", 5, 1, 300, len(rdata)) + rdata
        count += 1
        name = target
        owner = rdata
    addrs = records.get(name)
    if addrs is None:
        return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
    if isinstance(addrs, str):
        addrs = [addrs]
    for a in addrs:
        answers += owner + struct.pack("!HHIH", 1, 1, 300, 4) + struct.pack("!I", _ip(a))
    return struct.pack("!HHHHHH", qid, 0x8180, 1, count + len(addrs), 0, 0) + question + answers


# ---- HTTP/1.1 (RFC 9110 / 9112) ---------------------------------------------------------------------------------

class Resource:
    """What one path serves. status: 200 or an error (404, 500, ...); redirect: a Location (with status 301/302/
    307/308); chunked: Transfer-Encoding chunked (no Content-Length); drop_after: close the first `drop_times`
    connections after that many body bytes (a list: one value per connection); reset: the drop is ECONNRESET
    instead of an orderly close; content_length: a Content-Length header that lies (e.g. huge); ranges: honour
    Range: bytes=N- with 206; etag: sent and compared with If-Range."""

    def __init__(self, data=b"", status=200, redirect=None, chunked=False, drop_after=None, drop_times=1,
                 reset=False, content_length=None, ranges=True, etag='"mpinit-1"'):
        self.data = data.encode() if isinstance(data, str) else bytes(data)
        self.status = status
        self.redirect = redirect
        self.chunked = chunked
        if drop_after is None:
            self.drops = []
        elif isinstance(drop_after, (list, tuple)):
            self.drops = list(drop_after)
        else:
            self.drops = [drop_after] * drop_times
        self.reset = reset
        self.content_length = content_length
        self.ranges = ranges
        self.etag = etag
        self.requests = []      # (method, path, headers) per request


_REASONS = {200: "OK", 206: "Partial Content", 301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect",
            308: "Permanent Redirect", 404: "Not Found", 416: "Range Not Satisfiable",
            500: "Internal Server Error", 503: "Service Unavailable"}


class HttpServer:
    """silent: the end of a response, or a drop (Resource drop_after), reaches the client as silence instead of a
    close: what a QEMU guest sees behind guestfwd (tests/e2e/webserver.py), where only Content-Length or the
    client's read timeout ends a body."""

    def __init__(self, ip, port):
        self.ip = ip
        self.port = port
        self.silent = False
        self.resources = {}
        self.log = []           # (method, path, range header or None)

    def serve(self, path, data=b"", **kw):
        """Serve data at path (absolute, e.g. "/live/filesystem.squashfs"); keywords as Resource."""
        if not path.startswith("/"):
            raise ValueError("http path %r: want an absolute path" % (path,))
        r = Resource(data, **kw)
        self.resources[path] = r
        return r

    def respond(self, request):
        """(response bytes, drop offset in bytes or None, reset) for one complete request."""
        head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        method, target = parts[0], parts[1] if len(parts) > 1 else "/"
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        path = target.split("?", 1)[0]
        self.log.append((method, path, headers.get("range")))
        r = self.resources.get(path)
        if r is None:
            return self._simple(404, b"not found\n"), None, False
        r.requests.append((method, path, headers))
        if r.redirect:
            status = r.status if r.status in (301, 302, 303, 307, 308) else 302
            return self._simple(status, b"", [("Location", r.redirect)]), None, False
        if r.status != 200:
            return self._simple(r.status, b"error\n"), None, False
        data = r.data
        status = 200
        extra = [("ETag", r.etag)] if r.etag else []
        rng = headers.get("range")
        start = 0
        if rng and r.ranges and rng.startswith("bytes=") and rng.endswith("-"):
            if_range = headers.get("if-range")
            if if_range is None or if_range == r.etag:
                start = int(rng[6:-1])
                if start >= len(data):
                    return self._simple(416, b"", [("Content-Range", "bytes */%d" % len(data))]), None, False
                status = 206
                extra.append(("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data))))
        body = data[start:]
        if r.chunked:
            hdrs = extra + [("Transfer-Encoding", "chunked")]
            enc = b""
            for i in range(0, len(body), 7000):   # uneven chunk sizes: a hex length that is not a power of 2
                piece = body[i:i + 7000]
                enc += b"%x\r\n" % len(piece) + piece + b"\r\n"
            enc += b"0\r\n\r\n"
            payload = enc
        else:
            length = r.content_length if r.content_length is not None else len(body)
            hdrs = extra + [("Content-Length", str(length))]
            payload = body
        header = self._head(status, hdrs)
        drop = None
        if r.drops:
            drop = len(header) + r.drops.pop(0)
        if method == "HEAD":
            payload = b""
        return header + payload, drop, r.reset

    @staticmethod
    def _head(status, headers):
        lines = ["HTTP/1.1 %d %s" % (status, _REASONS.get(status, "Status")), "Server: mpinit-fake",
                 "Connection: close"]
        lines += ["%s: %s" % kv for kv in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _simple(self, status, body, headers=()):
        return self._head(status, list(headers) + [("Content-Length", str(len(body)))]) + body


# ---- sockets -----------------------------------------------------------------------------------------------------

class _Sock:
    def __init__(self, family, type_):
        self.family = family
        self.type = type_
        self.bound = None       # (ip, port)
        self.device = None      # SO_BINDTODEVICE
        self.broadcast = False
        self.queue = []         # UDP: [(bytes, addr)]
        self.peer = None        # TCP: HttpServer
        self.request = b""
        self.response = b""     # TCP: bytes still to deliver
        self.drop = None        # offset into the whole response where the connection ends
        self.reset = False
        self.sent = 0           # response bytes delivered
        self.rcvlowat = 1       # SO_RCVLOWAT: poll() is readable with this many bytes queued, or at a close
        self.silent = False     # the peer's HttpServer.silent
        self.closed_by_peer = False


class FakeNet:
    """The network state of one fake machine; FakeKernel exposes its syscall methods (SYSCALLS)."""

    SYSCALLS = ("socket", "bind", "connect", "sendto", "recvfrom", "recv_into", "recv_fill", "setsockopt", "poll",
                "if_hwaddr",
                "if_flags", "if_set_flags", "if_set_addr", "route_add", "bind_netlink")

    def __init__(self):
        self.kernel = None
        self.nics = []          # every described NIC (present or not)
        self.dhcp = DhcpServer()
        self.dns_servers = None  # None: the DHCP server's dns list; else the addresses that answer
        self.dns_records = {}   # name -> ip or [ips]
        self.dns_cnames = {}    # alias -> target name (answered with the target's A records)
        self.dns_log = []       # the queries answered
        self.dns_asked = []     # (server, clock ms) of every query sent to port 53, answered or not
        self.http = {}          # (ip, port) -> HttpServer
        self.routes = []        # (dest, netmask, gateway, ifname)
        self.socks = {}
        self.rcvlowat_log = []  # every SO_RCVLOWAT value set, in order (tests of the download loop)
        self._next_fd = _FD_BASE

    # ------------------------------------------------------------------ description

    def add_nic(self, name, mac=None, driver=None, modalias=None, carrier=True, carrier_after_ms=0,
                appear_after_ms=0):
        if not name or "/" in name or any(n.name == name for n in self.nics):
            raise ValueError("NIC name %r: want a new interface name like 'eth0'" % (name,))
        index = len(self.nics) + 2     # 1 is lo
        if mac is None:
            mac = "52:54:00:12:34:%02x" % (0x56 + len(self.nics))
        devdir = "devices/pci0000:00/0000:00:%02x.0" % (0x10 + len(self.nics))
        nic = Nic(name, mac, index, driver, modalias, carrier, carrier_after_ms, appear_after_ms, devdir)
        self.nics.append(nic)
        return nic

    def add_http_server(self, ip, port=80):
        _ip(ip)
        key = (ip, int(port))
        if key not in self.http:
            self.http[key] = HttpServer(ip, int(port))
        return self.http[key]

    # ------------------------------------------------------------------ state the kernel shows

    def present(self):
        """The NICs that exist now (driver loaded or built in, appear time passed)."""
        return [nic for nic in self.nics if self.kernel.has_appeared(nic.driver, nic.appear_after_ms)]

    def _nic(self, name):
        if not isinstance(name, str):
            raise TypeError("interface name must be str")
        for nic in self.present():
            if nic.name == name:
                return nic
        raise _oserror(errno.ENODEV, name)

    def sys_entries(self):
        """/sys entries (relative to /sys) for the present NICs and lo, as FakeKernel._sys_entries builds them."""
        e = {}
        clock = self.kernel.clock
        e["class/net"] = ("d",)
        e["devices/virtual/net/lo/ifindex"] = ("f", "1\n")
        e["devices/virtual/net/lo/address"] = ("f", "00:00:00:00:00:00\n")
        e["class/net/lo"] = ("l", "../../devices/virtual/net/lo")
        for nic in self.nics:
            if nic.modalias:
                e[nic.devdir + "/modalias"] = ("f", nic.modalias + "\n")
        for nic in self.present():
            d = "%s/net/%s" % (nic.devdir, nic.name)
            e[d + "/ifindex"] = ("f", "%d\n" % nic.index)
            e[d + "/address"] = ("f", ":".join("%02x" % b for b in nic.mac) + "\n")
            e[d + "/type"] = ("f", "1\n")
            up = nic.up_since is not None
            e[d + "/operstate"] = ("f", ("up" if nic.running(clock) else "down" if up else "down") + "\n")
            if up:
                e[d + "/carrier"] = ("f", "%d\n" % (1 if nic.running(clock) else 0))
            e["class/net/" + nic.name] = ("l", "../../" + d)
        return e

    # ------------------------------------------------------------------ interface calls

    def if_hwaddr(self, name):
        return self._nic(name).mac

    def if_flags(self, name):
        nic = self._nic(name)
        flags = nic.flags
        if nic.running(self.kernel.clock):
            flags |= abi.IFF_RUNNING
        return flags

    def if_set_flags(self, name, flags):
        nic = self._nic(name)
        if flags & abi.IFF_UP and nic.up_since is None:
            nic.up_since = self.kernel.clock
        elif not flags & abi.IFF_UP:
            nic.up_since = None
        nic.flags = flags & ~abi.IFF_RUNNING

    def if_set_addr(self, name, address, netmask):
        nic = self._nic(name)
        _ip(address)
        _ip(netmask)
        nic.address = address
        nic.netmask = netmask

    def route_add(self, dest, netmask, gateway, name):
        nic = self._nic(name)
        if gateway is not None and not nic.on_subnet(gateway):
            raise _oserror(errno.ENETUNREACH, name)   # fib_check_nh(): the gateway must be on a link
        route = (dest, netmask, gateway, name)
        if route in self.routes:
            raise _oserror(errno.EEXIST, name)
        self.routes.append(route)

    def _route(self, ip):
        """The NIC a packet to ip leaves on (on a configured subnet, else the default route), or None."""
        for nic in self.present():
            if nic.on_subnet(ip) and nic.up_since is not None:
                return nic
        for dest, mask, gw, name in self.routes:
            if dest == "0.0.0.0" and mask == "0.0.0.0":
                for nic in self.present():
                    if nic.name == name and nic.up_since is not None:
                        return nic
        return None

    # ------------------------------------------------------------------ sockets

    def owns(self, fd):
        return fd in self.socks

    def _sock(self, fd):
        s = self.socks.get(fd)
        if s is None:
            raise _oserror(errno.EBADF)
        return s

    def socket(self, family, type, proto=0):
        if family == abi.AF_NETLINK:
            # Only the kernel's uevent socket (netlink(7) NETLINK_KOBJECT_UEVENT), a datagram socket.
            if type & ~_socket.SOCK_NONBLOCK != abi.SOCK_DGRAM or proto != abi.NETLINK_KOBJECT_UEVENT:
                raise _oserror(errno.EPROTONOSUPPORT)
            fd = self._next_fd
            self._next_fd += 1
            self.socks[fd] = _Sock(family, abi.SOCK_DGRAM)
            return fd
        if family != abi.AF_INET or type not in (abi.SOCK_DGRAM, abi.SOCK_STREAM):
            raise _oserror(errno.EAFNOSUPPORT if family != abi.AF_INET else errno.EINVAL)
        fd = self._next_fd
        self._next_fd += 1
        self.socks[fd] = _Sock(family, type)
        return fd

    def close(self, fd):
        self.socks.pop(fd)

    def bind_netlink(self, fd, groups):
        s = self._sock(fd)
        if s.family != abi.AF_NETLINK:
            raise _oserror(errno.EINVAL)
        s.bound = ("netlink", groups)

    def uevent(self, action, devpath, env):
        """The kernel's uevent broadcast (lib/kobject_uevent.c): "action@devpath" then KEY=VALUE fields, each
        NUL-terminated, to every netlink socket bound to group 1."""
        self._seqnum = getattr(self, "_seqnum", 0) + 1
        fields = ["%s@%s" % (action, devpath), "ACTION=" + action, "DEVPATH=" + devpath]
        fields += ["%s=%s" % kv for kv in env] + ["SEQNUM=%d" % self._seqnum]
        msg = "".join(f + "\0" for f in fields).encode()
        for s in self.socks.values():
            if s.family == abi.AF_NETLINK and s.bound and s.bound[1] & 1:
                s.queue.append((msg, None))

    def bind(self, fd, addr):
        s = self._sock(fd)
        if s.family != abi.AF_INET:
            raise _oserror(errno.EINVAL)
        ip, port = addr
        _ip(ip)
        for other in self.socks.values():
            if other is not s and other.bound == (ip, port) and other.type == s.type:
                raise _oserror(errno.EADDRINUSE)
        s.bound = (ip, port)

    def setsockopt(self, fd, level, option, value):
        s = self._sock(fd)
        if level == abi.SOL_SOCKET and option == abi.SO_BINDTODEVICE:
            name = value.decode() if isinstance(value, bytes) else value
            self._nic(name)
            s.device = name
        elif level == abi.SOL_SOCKET and option == abi.SO_BROADCAST:
            s.broadcast = bool(value)
        elif level == abi.SOL_SOCKET and option == abi.SO_RCVLOWAT:
            if not isinstance(value, int):
                raise TypeError("SO_RCVLOWAT takes an int")
            # socket(7): a negative value means INT_MAX (sock_setsockopt() in net/core/sock.c), 0 means 1.
            s.rcvlowat = 0x7FFFFFFF if value < 0 else max(value, 1)
            self.rcvlowat_log.append(s.rcvlowat)

    def sendto(self, fd, data, addr=None):
        s = self._sock(fd)
        data = bytes(data)
        if s.type == abi.SOCK_STREAM:
            if s.peer is None:
                raise _oserror(errno.ENOTCONN)
            if s.closed_by_peer:
                raise _oserror(errno.EPIPE)
            s.request += data
            if b"\r\n\r\n" in s.request and not s.response:
                s.response, s.drop, s.reset = s.peer.respond(s.request)
                s.silent = s.peer.silent
            return len(data)
        ip, port = addr
        if ip == BROADCAST:
            if not s.broadcast:
                raise _oserror(errno.EACCES)   # udp(7): broadcast needs SO_BROADCAST
            nic = self._nic(s.device) if s.device else (self.present() or [None])[0]
            if nic is None or nic.up_since is None:
                raise _oserror(errno.ENETUNREACH)
            if port == 67 and self.dhcp is not None and nic.running(self.kernel.clock):
                for reply in self.dhcp.handle(data):
                    for other in self.socks.values():
                        if other.type == abi.SOCK_DGRAM and other.bound and other.bound[1] == 68 and \
                                other.device in (None, nic.name):
                            other.queue.append((reply, (self.dhcp.server, 67)))
            return len(data)
        nic = self._route(ip)
        if nic is None:
            raise _oserror(errno.ENETUNREACH)
        servers = self.dns_servers if self.dns_servers is not None else (self.dhcp.dns if self.dhcp else ())
        if port == 53:
            self.dns_asked.append((ip, self.kernel.clock))
        if port == 53 and ip in servers and nic.running(self.kernel.clock):
            answer = dns_answer(data, {k.lower(): v for k, v in self.dns_records.items()}, cnames=self.dns_cnames)
            if answer is not None:
                self.dns_log.append(data)
                s.queue.append((answer, (ip, 53)))
        return len(data)

    def connect(self, fd, addr, timeout_ms):
        s = self._sock(fd)
        ip, port = addr
        _ip(ip)
        nic = self._route(ip)
        if nic is None:
            raise _oserror(errno.ENETUNREACH)
        server = self.http.get((ip, port))
        if server is None or not nic.running(self.kernel.clock):
            # Nobody answers: the SYNs go unanswered until the caller's timeout.
            self.kernel.sleep_ms(timeout_ms)
            raise _oserror(errno.ETIMEDOUT)
        s.peer = server

    def recvfrom(self, fd, n):
        s = self._sock(fd)
        if s.type == abi.SOCK_STREAM:
            buf = bytearray(n)
            got = self.recv_into(fd, buf)
            return bytes(buf[:got]), None
        if not s.queue:
            raise _oserror(errno.EAGAIN)    # the agent polls first; a blocking read here would hang forever
        data, src = s.queue.pop(0)
        return data[:n], src

    def recv_into(self, fd, buf):
        s = self._sock(fd)
        if s.type != abi.SOCK_STREAM:
            data, _src = self.recvfrom(fd, len(buf))
            buf[:len(data)] = data
            return len(data)
        if not s.response:
            if s.peer is None:
                raise _oserror(errno.ENOTCONN)
            raise _oserror(errno.EAGAIN)
        end = self._end(s)
        if s.sent >= end:
            if s.silent:
                raise _oserror(errno.EAGAIN)    # nothing more will come, and no close either
            s.closed_by_peer = True
            if s.drop is not None and s.reset:
                raise _oserror(errno.ECONNRESET)
            return 0
        n = min(len(buf), end - s.sent, 65536)
        buf[:n] = s.response[s.sent:s.sent + n]
        s.sent += n
        return n

    def recv_fill(self, fd, buf, want, timeout_ms, out_fd=-1):
        """netsys.c recv_fill(): poll and take what is queued until buf holds `want` bytes, the peer closes (n <
        want), or nothing comes for timeout_ms (-n after n bytes; ETIMEDOUT after none); with out_fd >= 0 every
        piece is written there too and at most `want` bytes are taken; OSError(errno, out_fd) when that write
        fails. The writes go through syscalls.write(), as the native loop's write(2) calls: they are recorded and
        a fault injected on "write" fires in them."""
        from mpinit_agent import syscalls as sc

        if fd < 0:
            raise _oserror(errno.EBADF)
        if not 1 <= want <= len(buf):
            raise ValueError("want outside 1..len(buf)")
        mv = memoryview(buf)
        limit = want if out_fd >= 0 else len(buf)
        got = 0
        while got < want:
            if not self.poll(fd, abi.POLLIN, timeout_ms):
                if got:
                    return -got
                raise _oserror(errno.ETIMEDOUT)
            try:
                n = self.recv_into(fd, mv[got:limit])
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    continue
                if got:
                    return got
                raise
            if n == 0:
                return got
            w = 0
            while out_fd >= 0 and w < n:
                try:
                    w += sc.write(out_fd, bytes(mv[got + w:got + n]))
                except OSError as e:
                    raise OSError(e.errno, out_fd) from None
            got += n
        return got

    @staticmethod
    def _end(s):
        return len(s.response) if s.drop is None else min(s.drop, len(s.response))

    def poll(self, fd, events, timeout_ms):
        s = self._sock(fd)
        ready = 0
        if s.type == abi.SOCK_DGRAM:
            if s.queue:
                ready = abi.POLLIN
        elif s.closed_by_peer:
            ready = abi.POLLIN
        elif s.response:
            queued = self._end(s) - s.sent
            # tcp_poll() (net/ipv4/tcp.c): readable with SO_RCVLOWAT bytes queued or once the peer closed; a
            # silent peer never closes, so fewer bytes than the mark wait.
            if queued >= s.rcvlowat or (not s.silent and queued >= 0):
                ready = abi.POLLIN
        ready &= events | _select.POLLERR | _select.POLLHUP
        if not ready:
            self.kernel.sleep_ms(max(0, timeout_ms))
        return ready
