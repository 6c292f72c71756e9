# Network boot parameters, pure parsing (no I/O): ip= in the kernel's own syntax, BOOTIF=, URLs.
#
# ip= (Documentation/admin-guide/nfs/nfsroot.rst, net/ipv4/ipconfig.c ip_auto_config_setup()):
#   ip=off|none                       no network configuration from ip=
#   ip=on|any|dhcp|bootp|both         DHCP on the first interface with a carrier (BOOTP and RARP are not done:
#                                     bootp/both mean DHCP here, which every BOOTP server's successor speaks)
#   ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>
#                                     fields may be empty; autoconf empty means static when <client> is given
#                                     (ipconfig.c only asks a server for what is missing), else DHCP
#   ip=<device>:dhcp                  dracut's short form (dracut.cmdline(7)), also accepted
# dracut puts <mtu> and <macaddr> where the kernel has <dns0>/<dns1>: a field 8 that is not an IPv4 address is
# taken as dracut's MTU and ignored (documented).
#
# BOOTIF= (PXELINUX's IPAPPEND 2): "01-52-54-00-12-34-56", the ARP hardware type 1 (Ethernet) then the MAC.
#
# Only imported when a network boot is asked for (cmdline.py's ip= handler imports it to check the value).


class NetError(ValueError):
    """A bad ip=/BOOTIF=/URL value; str() says which part and why."""


def is_ipv4(s):
    parts = s.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit() or int(p) > 255:
            return False
    return True


def ip_int(s):
    n = 0
    for p in s.split("."):
        n = (n << 8) | int(p)
    return n


def classful_netmask(addr):
    """The netmask ipconfig.c's ic_defaults() picks when none is given: by the address's class (RFC 791)."""
    first = ip_int(addr) >> 24
    if first < 128:
        return "255.0.0.0"
    if first < 192:
        return "255.255.0.0"
    return "255.255.255.0"


def prefix_len(netmask):
    n = ip_int(netmask)
    bits = 0
    while n & 0x80000000:
        bits += 1
        n = (n << 1) & 0xFFFFFFFF
    return bits


_DHCP_WORDS = ("on", "any", "dhcp", "bootp", "both")
_OFF_WORDS = ("off", "none")


class IpSpec:
    """One ip= value: method "dhcp" | "static" | "off", and the fields given (None when empty)."""

    def __init__(self):
        self.method = "dhcp"
        self.client = None
        self.server = None
        self.gateway = None
        self.netmask = None
        self.hostname = None
        self.device = None
        self.dns = []

    def as_dict(self):
        return {"method": self.method, "client": self.client, "server": self.server, "gateway": self.gateway,
                "netmask": self.netmask, "hostname": self.hostname, "device": self.device, "dns": list(self.dns)}

    def __repr__(self):
        return "IpSpec(%r)" % (self.as_dict(),)


def _addr(value, what):
    if not value:
        return None
    if not is_ipv4(value):
        raise NetError("%s %r is not an IPv4 address a.b.c.d" % (what, value))
    return value


def parse_ip(value):
    """An IpSpec from one ip= value; NetError naming the field for a bad one."""
    spec = IpSpec()
    if value is None or value == "":
        raise NetError("ip= needs a value (dhcp, off, or client:server:gw:netmask:hostname:device:autoconf)")
    v = value
    if v in _OFF_WORDS:
        spec.method = "off"
        return spec
    if v in _DHCP_WORDS:
        return spec
    if v == "rarp":
        raise NetError("ip=rarp: RARP is not supported (use ip=dhcp or a static ip=)")
    fields = v.split(":")
    if len(fields) == 2 and fields[1] in _DHCP_WORDS + _OFF_WORDS:  # dracut's ip=<device>:dhcp
        spec.device = fields[0] or None
        spec.method = "off" if fields[1] in _OFF_WORDS else "dhcp"
        return spec
    if len(fields) > 10:
        raise NetError("ip=%s: %d fields, at most 10 (client:server:gw:netmask:hostname:device:autoconf:dns0:"
                       "dns1:ntp0)" % (v, len(fields)))
    while len(fields) < 10:
        fields.append("")
    spec.client = _addr(fields[0], "client address")
    spec.server = _addr(fields[1], "server address")
    spec.gateway = _addr(fields[2], "gateway")
    spec.netmask = _addr(fields[3], "netmask")
    if spec.netmask is not None:
        n = ip_int(spec.netmask)
        if n != (0xFFFFFFFF << (32 - prefix_len(spec.netmask))) & 0xFFFFFFFF:
            raise NetError("netmask %r is not a contiguous mask" % spec.netmask)
    spec.hostname = fields[4] or None
    spec.device = fields[5] or None
    auto = fields[6]
    if auto in _OFF_WORDS:
        spec.method = "static"
    elif auto in _DHCP_WORDS:
        spec.method = "dhcp"
    elif auto == "":
        spec.method = "static" if spec.client else "dhcp"
    elif auto == "rarp":
        raise NetError("ip=...:rarp: RARP is not supported (use dhcp or a static address)")
    else:
        raise NetError("autoconf %r: expected off, none, on, any, dhcp, bootp or both" % auto)
    for f in fields[7:9]:
        if f and is_ipv4(f):
            spec.dns.append(f)
        elif f and not f.isdigit():
            raise NetError("DNS server %r is not an IPv4 address a.b.c.d" % f)
    if fields[9] and not is_ipv4(fields[9]):
        raise NetError("NTP server %r is not an IPv4 address a.b.c.d" % fields[9])
    if spec.method == "static":
        if not spec.client:
            raise NetError("ip=%s: a static configuration needs the client address (first field)" % v)
        if spec.netmask is None:
            spec.netmask = classful_netmask(spec.client)
    return spec


def parse_mac(text):
    """'52:54:00:12:34:56' or '52-54-...' -> 6 bytes; NetError otherwise."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise NetError("%r is not a MAC address (six hex bytes)" % text)
    out = bytearray(6)
    for i in range(6):
        p = parts[i]
        if len(p) != 2:
            raise NetError("%r is not a MAC address (six hex bytes)" % text)
        try:
            out[i] = int(p, 16)
        except ValueError:
            raise NetError("%r is not a MAC address (six hex bytes)" % text)
    return bytes(out)


def parse_bootif(value):
    """BOOTIF=01-aa-bb-cc-dd-ee-ff -> the MAC as 6 bytes (a bare MAC is accepted too)."""
    if not value:
        raise NetError("BOOTIF= needs a value (01-<mac>)")
    v = value.replace(":", "-")
    if len(v) == 20 and v[2] == "-":
        if v[:2] != "01":
            raise NetError("BOOTIF=%s: hardware type %s is not Ethernet (01)" % (value, v[:2]))
        v = v[3:]
    return parse_mac(v)


def mac_str(mac):
    return ":".join(["%02x" % b for b in mac])


def parse_url(url):
    """(scheme, host, port, path) of an http:// URL; NetError for anything else (https needs TLS, which this
    runtime does not have: pin the image with rd.live.sha256= instead)."""
    if not url:
        raise NetError("empty URL")
    sep = url.find("://")
    if sep <= 0:
        raise NetError("%s is not a URL (http://host/path)" % url)
    scheme = url[:sep].lower()
    if scheme == "https":
        raise NetError("%s: https is not supported (no TLS in the initramfs); use http:// and pin the image "
                       "with rd.live.sha256=" % url)
    if scheme != "http":
        raise NetError("%s: scheme %s is not supported (http only)" % (url, scheme))
    rest = url[sep + 3:]
    slash = rest.find("/")
    if slash < 0:
        hostport, path = rest, "/"
    else:
        hostport, path = rest[:slash], rest[slash:]
    if "#" in path:
        path = path[:path.find("#")]
    if "@" in hostport:
        raise NetError("%s: user:password@ in the URL is not supported" % url)
    port = 80
    host = hostport
    if hostport.startswith("["):
        raise NetError("%s: IPv6 addresses are not supported" % url)
    colon = hostport.rfind(":")
    if colon >= 0:
        host = hostport[:colon]
        p = hostport[colon + 1:]
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise NetError("%s: bad port %r" % (url, p))
        port = int(p)
    if not host:
        raise NetError("%s: no host" % url)
    for c in host:
        if not (c.isalpha() or c.isdigit() or c in "-."):
            raise NetError("%s: bad host name %r" % (url, host))
    for c in path:
        if ord(c) <= 32 or ord(c) >= 127:
            raise NetError("%s: the path must be URL-encoded (no spaces or control characters)" % url)
    return scheme, host.lower(), port, path


def join_url(base, location):
    """A Location header resolved against the URL it came from (RFC 3986 section 5, the cases servers send:
    absolute URL, absolute path, relative path)."""
    if "://" in location:
        return location
    scheme, host, port, path = parse_url(base)
    origin = "%s://%s%s" % (scheme, host, "" if port == 80 else ":%d" % port)
    if location.startswith("//"):
        return scheme + ":" + location
    if location.startswith("/"):
        return origin + location
    q = path.find("?")
    if q >= 0:
        path = path[:q]
    return origin + path[:path.rfind("/") + 1] + location


def url_basename(url):
    q = url.find("?")
    base = url if q < 0 else url[:q]
    name = base[base.rfind("/") + 1:]
    return name


_counter = [0]


def random_bytes(n, salt=b""):
    """n bytes for protocol ids (DHCP xid, DNS query id) and retransmission jitter, without waiting for entropy:
    os.urandom is getrandom(2) without GRND_NONBLOCK on MicroPython's unix port, which blocks until the kernel's
    CRNG is initialised, and since Linux 5.18 a read of /dev/urandom that early runs try_to_generate_entropy()
    first (drivers/char/random.c); either costs 1-2 s of a boot under QEMU (measured in test_netboot.py's boots).
    These ids only have to differ between exchanges and between machines (RFC 2131 section 4.4.1: the client
    chooses a random xid so that replies match requests): the SHA-256 of the clock, a counter and the salt (the
    MAC) does that. Not a secret: anyone on the link sees the ids anyway."""
    import hashlib
    import struct

    from . import syscalls as sc

    _counter[0] += 1
    h = hashlib.sha256(struct.pack("!QI", sc.uptime_ms() & 0xFFFFFFFFFFFFFFFF, _counter[0]) + bytes(salt))
    return h.digest()[:n]
