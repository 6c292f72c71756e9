# The network stage: bring one interface up for a network boot (root=live:http://..., archiso_http_srv=, fetch=,
# url=, or rd.neednet=1), between devices and medium. Skipped at once, without importing any of this, when none of
# those is on the command line (main.network_stage checks opts first).
#
#   1. interfaces: /sys/class/net minus lo; NIC drivers were loaded by the modules stage's coldplug (a late NIC
#      gets more coldplug passes while we wait); BOOTIF= (PXELINUX's MAC) or ip='s <device> picks one;
#   2. link up (SIOCSIFFLAGS IFF_UP) and a wait for carrier (IFF_RUNNING) for rd.net.timeout.carrier= seconds
#      (dracut's name), else with the medium's deadline rules (rootdelay=, rootwait, config root_wait_s:
#      ctx.deadline_ms());
#   3. ip= static: the address, netmask and gateway given; else DHCP (dhcp.py) on the first interface with a
#      carrier (the next one if it gets no lease), each interface for rd.net.timeout.dhcp= seconds (dracut's
#      name; it hands the value to dhclient -timeout), else for what is left of the deadline (at least
#      _MIN_DHCP_MS);
#   4. the address (SIOCSIFADDR/SIOCSIFNETMASK), the default route (SIOCADDRT) when there is a gateway;
#   5. what was set up is written for the live system: contract.NET_DIR/<ifname>.json and NET_DIR/resolv.conf;
#      the interface is left up (docs/agent.md).
from micropython import const

from . import contract, fsutil, log, netconf
from . import syscalls as sc
from .failure import BootError, oserror_text

_POLL_MS = const(100)
_MIN_DHCP_MS = const(10000)     # a DHCP exchange gets at least this long, even late in an almost spent deadline


def _param(opts):
    if opts.net_ip:
        return "ip=%s" % opts.net_ip[0]
    if getattr(opts, "url", None):
        return "network boot from %s" % opts.url
    return "rd.neednet=1"


def interfaces(sys_class_net="/sys/class/net"):
    """Interface names except loopback, sorted (eth0 before eth1, as the kernel numbers them)."""
    out = []
    for name in sorted(fsutil.listdir(sys_class_net)):
        if name == "lo":
            continue
        out.append(name)
    return out


def _describe(names):
    seen = []
    for name in names:
        try:
            flags = sc.if_flags(name)
            mac = netconf.mac_str(sc.if_hwaddr(name))
            seen.append("%s %s: %s, %s" % (name, mac, "up" if flags & sc.IFF_UP else "down",
                                          "carrier" if flags & sc.IFF_RUNNING else "no carrier"))
        except OSError as e:
            seen.append("%s: %s" % (name, oserror_text(e)))
    return seen


def pick_spec(opts):
    """The IpSpec in force: the first ip= that is not off (DHCP when there is no ip=), or None for ip=off."""
    specs = [netconf.parse_ip(v) for v in opts.net_ip]
    if not specs:
        return netconf.IpSpec()
    for s in specs:
        if s.method != "off":
            return s
    return None


def _matches(name, spec, bootif):
    if spec.device and name != spec.device:
        return False
    if bootif is not None:
        try:
            return sc.if_hwaddr(name) == bootif
        except OSError:
            return False
    return True


def has_carrier(name):
    """/sys/class/net/<name>/carrier (netif_carrier_ok(), current at once), else SIOCGIFFLAGS' IFF_RUNNING, which
    follows the operational state that linkwatch updates up to a second later (net/core/link_watch.c)."""
    try:
        with open("/sys/class/net/%s/carrier" % name) as f:
            return f.read().strip() == "1"
    except (OSError, ValueError):
        return bool(sc.if_flags(name) & sc.IFF_RUNNING)


def _link_up(name):
    flags = sc.if_flags(name)
    if not flags & sc.IFF_UP:
        sc.if_set_flags(name, flags | sc.IFF_UP)


def wait_for_carrier(ctx, spec, bootif):
    """Bring the matching interfaces up and wait until one has a carrier. Returns the names with a carrier."""
    carrier_s = getattr(ctx.opts, "net_timeout_carrier", None)
    deadline = carrier_s * 1000 if carrier_s is not None else ctx.deadline_ms()
    start = sc.uptime_ms()
    raised = []
    while True:
        names = [n for n in interfaces() if _matches(n, spec, bootif)]
        running = []
        for name in names:
            try:
                if name not in raised:
                    _link_up(name)
                    raised.append(name)
                    log.info("network: %s: link up" % name)
                if has_carrier(name):
                    running.append(name)
            except OSError as e:
                log.warning("network: %s: %s" % (name, oserror_text(e)))
        if running:
            log.info("network: carrier on %s after %d ms" % (", ".join(running), sc.uptime_ms() - start))
            return running
        if deadline is not None and sc.uptime_ms() - start >= deadline:
            break
        sc.sleep_ms(_POLL_MS)
        if ctx.modules is not None and ctx.config["coldplug"]:
            ctx.modules.coldplug()  # a NIC whose driver binds late (USB Ethernet)
    every = interfaces()
    what = "an interface"
    if spec.device:
        what = "interface %s" % spec.device
    if bootif is not None:
        what = "the interface with MAC %s (BOOTIF=)" % netconf.mac_str(bootif)
    seen = _describe(every) or ["no network interfaces at all (missing NIC driver? see the modules stage; "
                                "mpinit pack --modules generic-net)"]
    if ctx.modules is not None and ctx.modules.failed:
        seen.append("modules that failed to load: %s" % ", ".join([n for n, _ in ctx.modules.failed]))
    raise BootError("network", "%s with a link (carrier) did not appear within %d s" % (what, deadline // 1000),
                    param="%s (%s to wait longer)" % (_param(ctx.opts), "rd.net.timeout.carrier=" if carrier_s
                                                      is not None else "rd.net.timeout.carrier=, rootdelay="),
                    tried=["brought up: %s" % (", ".join(raised) or "nothing")], seen=seen)


class Config:
    """The configuration applied to one interface; as_dict() is what NET_DIR/<ifname>.json holds."""

    def __init__(self, ifname, mac, method):
        self.ifname = ifname
        self.mac = mac
        self.method = method
        self.address = None
        self.netmask = None
        self.gateway = None
        self.dns = []
        self.hostname = None
        self.domain = None
        self.server = None
        self.lease_s = None
        self.obtained_ms = None

    def as_dict(self):
        return {"interface": self.ifname, "mac": netconf.mac_str(self.mac), "method": self.method,
                "address": self.address, "netmask": self.netmask,
                "prefix": netconf.prefix_len(self.netmask) if self.netmask else None, "gateway": self.gateway,
                "dns": list(self.dns), "hostname": self.hostname, "domain": self.domain, "server": self.server,
                "lease_s": self.lease_s, "obtained_uptime_ms": self.obtained_ms}


def configure(ctx, spec, names):
    """Static or DHCP configuration on the first interface of names that gets one. Returns a Config."""
    deadline = ctx.deadline_ms()
    dhcp_s = getattr(ctx.opts, "net_timeout_dhcp", None)
    tried = []
    for name in names:
        mac = sc.if_hwaddr(name)
        if spec.method == "static":
            cfg = Config(name, mac, "static")
            cfg.address = spec.client
            cfg.netmask = spec.netmask
            cfg.gateway = spec.gateway
            cfg.dns = list(spec.dns)
            cfg.hostname = spec.hostname
            cfg.server = spec.server
            return cfg
        from . import dhcp

        until = None
        if dhcp_s is not None:
            until = sc.uptime_ms() + dhcp_s * 1000
        elif deadline is not None:
            spent = sc.uptime_ms() - ctx.stage_start
            until = sc.uptime_ms() + max(deadline - spent, _MIN_DHCP_MS)
        client = dhcp.Client(name, mac, hostname=spec.hostname)
        try:
            lease = client.run(until)
        except dhcp.DhcpError as e:
            tried.append("%s: %s" % (name, e))
            tried.extend(["  " + s for s in client.seen[-8:]])
            continue
        except OSError as e:
            tried.append("%s: DHCP socket: %s" % (name, oserror_text(e)))
            continue
        cfg = Config(name, mac, "dhcp")
        cfg.address = lease.address
        cfg.netmask = lease.netmask or netconf.classful_netmask(lease.address)
        cfg.gateway = spec.gateway or lease.router
        cfg.dns = list(spec.dns) or lease.dns
        cfg.hostname = spec.hostname or lease.hostname
        cfg.domain = lease.domain
        cfg.server = lease.server
        cfg.lease_s = lease.lease_s
        cfg.obtained_ms = lease.obtained_ms
        return cfg
    raise BootError("network", "no DHCP lease on %s%s" % (", ".join(names), " within %d s each" % dhcp_s
                                                          if dhcp_s is not None else ""),
                    param="rd.net.timeout.dhcp=%d" % dhcp_s if dhcp_s is not None else _param(ctx.opts),
                    tried=tried, seen=_describe(names))


def apply(cfg):
    """The address and netmask, then the default route. OSError names the interface."""
    sc.if_set_addr(cfg.ifname, cfg.address, cfg.netmask)
    if cfg.gateway:
        try:
            sc.route_add("0.0.0.0", "0.0.0.0", cfg.gateway, cfg.ifname)
        except OSError as e:
            if not e.args or e.args[0] != sc.EEXIST:
                raise


def write_state(cfg):
    """NET_DIR/<ifname>.json and NET_DIR/resolv.conf for the live system (and a person in the rescue REPL)."""
    import json

    fsutil.makedirs(contract.NET_DIR)
    fsutil.write_atomic(fsutil.join(contract.NET_DIR, cfg.ifname + ".json"), json.dumps(cfg.as_dict()))
    lines = ["# written by mpinit's network stage (%s on %s)" % (cfg.method, cfg.ifname)]
    if cfg.domain:
        lines.append("search %s" % cfg.domain)
    for d in cfg.dns:
        lines.append("nameserver %s" % d)
    fsutil.write_atomic(contract.NET_RESOLV_CONF, "\n".join(lines) + "\n")


def run(ctx):
    opts = ctx.opts  # asked for: main.network_stage skips (without importing this module) when not
    try:
        spec = pick_spec(opts)
        bootif = netconf.parse_bootif(opts.bootif) if opts.bootif else None
    except netconf.NetError as e:
        raise BootError("network", str(e), param=_param(opts))
    if spec is None:
        if getattr(opts, "url", None):
            raise BootError("network", "ip=off, but the image is to be fetched from %s" % opts.url,
                            param="ip=off")
        return "skipped: ip=off"
    names = wait_for_carrier(ctx, spec, bootif)
    cfg = configure(ctx, spec, names)
    try:
        apply(cfg)
    except OSError as e:
        raise BootError("network", "configuring %s as %s/%s via %s failed: %s" % (
            cfg.ifname, cfg.address, cfg.netmask, cfg.gateway or "-", oserror_text(e)), param=_param(opts))
    try:
        write_state(cfg)
    except OSError as e:
        log.warning("network: writing %s: %s" % (contract.NET_DIR, oserror_text(e)))
    ctx.net = cfg
    return "%s %s/%d%s, %s%s" % (
        cfg.ifname, cfg.address, netconf.prefix_len(cfg.netmask),
        " via %s" % cfg.gateway if cfg.gateway else "",
        "dhcp from %s" % cfg.server if cfg.method == "dhcp" else "static",
        ", dns %s" % " ".join(cfg.dns) if cfg.dns else "")
