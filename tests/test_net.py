"""Network boot: ip=/BOOTIF=/URL parsing (netconf.py), the parameters in cmdline.py, and whole boots of the fake
machine for every URL form (root=live:http://, archiso_http_srv=, fetch=, url= with an ISO) and every failure
(no NIC, no carrier, no DHCP answer, DNS, 404, a wrong or missing digest, too little memory)."""

import hashlib
import json

import pytest

from mpinit_agent import cmdline, contract, netconf

URL = "http://10.0.2.100/live/filesystem.squashfs"


# ---- ip= (Documentation/admin-guide/nfs/nfsroot.rst) ---------------------------------------------------------

@pytest.mark.parametrize("value, want", [
    ("dhcp", {"method": "dhcp"}), ("on", {"method": "dhcp"}), ("any", {"method": "dhcp"}),
    ("bootp", {"method": "dhcp"}), ("off", {"method": "off"}), ("none", {"method": "off"}),
    ("eth1:dhcp", {"method": "dhcp", "device": "eth1"}),
    ("10.0.0.5::10.0.0.1:255.255.255.0:box:eth0:off", {"method": "static", "client": "10.0.0.5",
                                                        "gateway": "10.0.0.1", "netmask": "255.255.255.0",
                                                        "hostname": "box", "device": "eth0"}),
    ("10.0.0.5:::::eth0:none:10.0.0.53:10.0.0.54", {"method": "static", "netmask": "255.0.0.0",
                                                    "dns": ["10.0.0.53", "10.0.0.54"]}),
    ("192.168.1.9", {"method": "static", "netmask": "255.255.255.0"}),          # classful default
    (":::::eth0:dhcp", {"method": "dhcp", "device": "eth0", "client": None}),
    ("10.1.2.3:::::eth0:off:1500", {"method": "static", "dns": []}),            # dracut's MTU in field 8
])
def test_parse_ip(value, want):
    got = netconf.parse_ip(value).as_dict()
    for k, v in want.items():
        assert got[k] == v, (k, got)


@pytest.mark.parametrize("value, why", [
    ("", "needs a value"), ("rarp", "RARP"), ("10.0.0.300", "client address"),
    ("10.0.0.5::10.0.0.1:255.0.255.0::eth0:off", "contiguous"), ("::::::magic", "autoconf"),
    (":::::eth0:off", "client address"), ("1:2:3:4:5:6:7:8:9:10:11", "at most 10"),
    ("10.0.0.5:::::eth0:off:dns", "DNS server"),
])
def test_parse_ip_rejects(value, why):
    with pytest.raises(netconf.NetError, match=why):
        netconf.parse_ip(value)


def test_bootif_and_mac():
    assert netconf.parse_bootif("01-52-54-00-12-34-56") == bytes.fromhex("525400123456")
    assert netconf.parse_bootif("52:54:00:12:34:56") == bytes.fromhex("525400123456")
    for bad in ("06-52-54-00-12-34-56", "01-52-54", "zz-zz-zz-zz-zz-zz"):
        with pytest.raises(netconf.NetError):
            netconf.parse_bootif(bad)


@pytest.mark.parametrize("url, want", [
    ("http://10.0.2.100/live/x.sfs", ("http", "10.0.2.100", 80, "/live/x.sfs")),
    ("HTTP://Boot.Example:8080", ("http", "boot.example", 8080, "/")),
    ("http://h/p?q=1#frag", ("http", "h", 80, "/p?q=1")),
])
def test_parse_url(url, want):
    assert netconf.parse_url(url) == want


@pytest.mark.parametrize("url, why", [
    ("https://h/x", "https is not supported"), ("ftp://h/x", "http only"), ("h/x", "not a URL"),
    ("http://h:0/x", "bad port"), ("http://u:p@h/x", "user:password"), ("http:///x", "no host"),
    ("http://h/a b", "URL-encoded"), ("http://[::1]/x", "IPv6"),
])
def test_parse_url_rejects(url, why):
    with pytest.raises(netconf.NetError, match=why):
        netconf.parse_url(url)


def test_join_urls():
    assert netconf.join_url("http://h:81/a/b", "/c") == "http://h:81/c"
    assert netconf.join_url("http://h/a/b?x", "c") == "http://h/a/c"
    assert netconf.join_url("http://h/a/b", "http://o/p") == "http://o/p"
    assert netconf.join_url("http://h/a/b", "//o/p") == "http://o/p"


# ---- the kernel parameters ------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, url", [
    ("root=live:%s ip=dhcp" % URL, URL),
    ("archiso_http_srv=http://srv/iso/ archisobasedir=arch ip=dhcp", "http://srv/iso/arch/x86_64/airootfs.sfs"),
    ("archiso_http_srv=http://srv/", "http://srv/arch/x86_64/airootfs.sfs"),
    ("boot=live fetch=http://srv/live/filesystem.squashfs", "http://srv/live/filesystem.squashfs"),
    ("boot=casper url=http://srv/ubuntu.iso ip=dhcp", "http://srv/ubuntu.iso"),
])
def test_url_forms(line, url):
    o = cmdline.parse(line)
    assert o.url == url and o.live == url
    assert "ip=dhcp" not in o.init_env and not [e for e in o.init_env if e.startswith(("url=", "fetch="))]


def test_network_parameters():
    o = cmdline.parse("ip=eth0:dhcp ip=off BOOTIF=01-52-54-00-12-34-56 rd.neednet=1 rd.live.sha256=%s" % ("AB" * 32))
    assert o.net_ip == ["eth0:dhcp", "off"] and o.bootif == "01-52-54-00-12-34-56" and o.neednet
    assert o.live_sha256 == "ab" * 32 and o.url is None and o.live is None


@pytest.mark.parametrize("line, param", [
    ("ip=10.0.0.999", "ip"), ("BOOTIF=xx", "BOOTIF"), ("root=live:https://h/x", "root"),
    ("fetch=ftp://x/y", "fetch"), ("rd.live.sha256=abc", "rd.live.sha256"),
])
def test_bad_network_parameters(line, param):
    with pytest.raises(cmdline.CmdlineError) as e:
        cmdline.parse(line)
    assert e.value.param == param or param == "root"


# ---- whole boots in the fake machine --------------------------------------------------------------------------

def net_machine(fake_machine, cmdline_, ram_mb=1024, nic=True, serve=True, **nic_kw):
    m = fake_machine(cmdline=cmdline_, ram_mb=ram_mb)
    m.add_module("virtio_net", aliases=("virtio:d00000001v*",))
    if nic:
        m.add_nic("eth0", driver="virtio_net", modalias="virtio:d00000001v00001AF4", **nic_kw)
    sq = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\n"), "etc/os-release": b"ID=netboot\n"},
                    size=3 << 20)
    srv = m.add_http_server("10.0.2.100")
    if serve:
        srv.serve("/live/filesystem.squashfs", sq.data)
    return m, srv, sq


def assert_booted(r):
    assert r.handed_off, r.console[-3000:]
    assert r.read("/etc/os-release") == b"ID=netboot\n"
    assert r.mount_at("/")[2] == "overlay"


def test_dhcp_boot_writes_the_network_state(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp" % URL)
    m.net.dhcp.hostname = "node7"
    m.net.dhcp.domain = "lab.example"
    r = m.boot()
    assert_booted(r)
    state = json.loads(r.read(contract.NET_DIR + "/eth0.json"))
    assert state["address"] == "10.0.2.15" and state["prefix"] == 24 and state["gateway"] == "10.0.2.2"
    assert state["dns"] == ["10.0.2.3"] and state["hostname"] == "node7" and state["method"] == "dhcp"
    assert r.read(contract.NET_RESOLV_CONF) == (b"# written by mpinit's network stage (dhcp on eth0)\n"
                                                b"search lab.example\nnameserver 10.0.2.3\n")
    assert ("0.0.0.0", "0.0.0.0", "10.0.2.2", "eth0") in m.net.routes
    assert r.loaded_modules[0] == "virtio_net"          # the NIC driver by coldplug
    assert "mpinit: fetch: 100%" in r.console
    assert r.mount_at(contract.TORAM_MOUNT)[2] == "tmpfs"


def test_plain_boot_does_not_touch_the_network(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE")
    sq = m.squashfs({"sbin/init": m.executable(b"x")})
    m.add_disk("sda", m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": sq}))
    r = m.boot()
    assert r.handed_off, r.console
    assert not [c for c in r.calls if c[0] in ("socket", "if_flags", "if_set_flags")]
    assert "network: skipped: no network boot asked for" in "".join(r.kmsg)


def test_static_ip_and_a_host_name_through_dns(fake_machine):
    url = "http://boot.example.org/live/filesystem.squashfs"
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=10.0.2.77::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3"
                             % url)
    m.net.dhcp = None
    m.net.dns_servers = ["10.0.2.3"]
    m.net.dns_records["boot.example.org"] = "10.0.2.100"
    r = m.boot()
    assert_booted(r)
    assert json.loads(r.read(contract.NET_DIR + "/eth0.json"))["address"] == "10.0.2.77"
    assert len(m.net.dns_log) == 1


def test_archiso_http_srv_layout_with_its_sha512(fake_machine):
    m, srv, sq = net_machine(fake_machine, "archiso_http_srv=http://10.0.2.100/iso/ archisobasedir=arch ip=dhcp "
                             "checksum=y", serve=False)
    srv.serve("/iso/arch/x86_64/airootfs.sfs", sq.data)
    srv.serve("/iso/arch/x86_64/airootfs.sha512", "%s  airootfs.sfs\n" % hashlib.sha512(sq.data).hexdigest())
    r = m.boot()
    assert_booted(r)
    base = "/iso/arch/x86_64/airootfs."
    assert [p for _, p, _ in srv.log] == [base + "sfs.sha256", base + "sfs.sha512", base + "sha256", base + "sha512",
                                          base + "sfs"]
    assert "sha512 ok" in "".join(r.kmsg)


def test_fetch_with_bootif_picks_the_interface(fake_machine):
    m, srv, sq = net_machine(fake_machine, "boot=live fetch=%s BOOTIF=01-52-54-00-00-00-02" % URL)
    m.add_nic("eth1", mac="52:54:00:00:00:02", driver="virtio_net")
    r = m.boot()
    assert_booted(r)
    assert r.exists(contract.NET_DIR + "/eth1.json") and not r.exists(contract.NET_DIR + "/eth0.json")


def test_casper_url_of_an_iso(fake_machine):
    m, srv, sq = net_machine(fake_machine, "boot=casper url=http://10.0.2.100/ubuntu.iso ip=dhcp", serve=False)
    iso = m.filesystem("iso9660", label="UBUNTU", files={"casper/filesystem.squashfs": sq}, size=4 << 20)
    srv.serve("/ubuntu.iso", iso.data)
    r = m.boot()
    assert_booted(r)
    assert r.mount_at(contract.ISO_MOUNT)[2] == "iso9660"


def test_pinned_digest_good_and_resumed_after_drops(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp rd.live.sha256=%s" % (URL, "0" * 64), serve=False)
    m.cmdline = "root=live:%s ip=dhcp rd.live.sha256=%s" % (URL, hashlib.sha256(sq.data).hexdigest())
    srv.serve("/live/filesystem.squashfs", sq.data, drop_after=[1 << 20, 1 << 20])
    r = m.boot()
    assert_booted(r)
    assert "resumed 2 times" in "".join(r.kmsg) and "sha256 ok" in "".join(r.kmsg)


def _failed(r, *words):
    assert not r.handed_off and r.rescue, r.console[-3000:]
    at = r.console.find("boot failed")
    assert at >= 0, r.console[-3000:]
    report = r.console[at:]
    for w in words:
        assert w in report, (w, report[:3000])
    return report


def test_wrong_digest_shows_both_and_mounts_nothing(fake_machine):
    wrong = "ab" * 32
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp rd.live.sha256=%s" % (URL, wrong))
    r = m.boot()
    _failed(r, "stage 'medium'", "does not match rd.live.sha256=", "expected " + wrong,
            "computed " + hashlib.sha256(sq.data).hexdigest())
    assert not [e for e in r.mount_log if e[0] == "mount" and e[3] in ("squashfs", "overlay")]
    assert r.mount_at(contract.TORAM_MOUNT) is None        # the tmpfs with the bad image is gone


def test_checksum_y_without_a_checksum_file(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp checksum=y" % URL)
    _failed(m.boot(), "no checksum file beside", URL + ".sha256", URL + ".sha512")


def test_404_names_url_and_status(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp" % URL, serve=False)
    _failed(m.boot(), "stage 'medium'", URL, "HTTP 404 Not Found")


def test_content_length_larger_than_ram(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp" % URL, ram_mb=512, serve=False)
    srv.serve("/live/filesystem.squashfs", sq.data, content_length=4 << 30)
    r = m.boot()
    _failed(r, "not enough memory for %s: 4096 MiB" % URL, "MemAvailable")
    assert srv.log and not [e for e in r.mount_log if e[0] == "mount" and e[3] == "squashfs"]


def test_no_server_is_a_clear_failure(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:http://10.0.2.101/x.squashfs ip=dhcp")
    _failed(m.boot(), "http://10.0.2.101/x.squashfs", "giving up after 5 attempts", "connect to 10.0.2.101:80")


def test_no_nic_lists_what_it_saw(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp rootdelay=2" % URL, nic=False)
    _failed(m.boot(), "stage 'network'", "did not appear within 2 s", "no network interfaces at all",
            "generic-net")


def test_no_carrier(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp rootdelay=3" % URL, carrier=False)
    r = m.boot()
    _failed(r, "stage 'network'", "eth0 52:54:00:12:34:56: up, no carrier")
    assert 3000 <= r.uptime_ms < 5000


def test_late_carrier_is_waited_for(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp" % URL, carrier_after_ms=2500)
    assert_booted(m.boot())


def test_no_dhcp_answer(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp rootdelay=5" % URL)
    m.net.dhcp = None
    _failed(m.boot(), "stage 'network'", "no DHCP lease on eth0", "sent DISCOVER")


def test_dns_failure_names_the_host(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:http://nowhere.example/x ip=dhcp")
    _failed(m.boot(), "stage 'medium'", "cannot resolve nowhere.example", "NXDOMAIN")


def test_ip_off_with_a_url_is_refused(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=off" % URL)
    _failed(m.boot(), "stage 'network'", "ip=off")


def test_neednet_brings_the_network_up_for_a_disk_boot(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MPLIVE rd.neednet=1 ip=eth0:dhcp")
    m.add_nic("eth0")
    sq = m.squashfs({"sbin/init": m.executable(b"x")})
    m.add_disk("sda", m.filesystem("vfat", label="MPLIVE", files={"live/filesystem.squashfs": sq}))
    r = m.boot()
    assert r.handed_off, r.console[-3000:]
    assert json.loads(r.read(contract.NET_DIR + "/eth0.json"))["address"] == "10.0.2.15"
    assert r.mount_at(contract.TORAM_MOUNT) is None          # the image came from the disk


def test_second_interface_when_the_first_gets_no_lease(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp rootdelay=5" % URL)
    m.add_nic("eth1", driver="virtio_net")
    calls = []
    real = m.net.dhcp.handle

    def only_eth1(packet):        # the server answers eth1's client only (by its MAC)
        calls.append(packet[28:34])
        return real(packet) if packet[28:34] == bytes.fromhex("525400123457") else []
    m.net.dhcp.handle = only_eth1
    r = m.boot()
    assert_booted(r)
    assert r.exists(contract.NET_DIR + "/eth1.json") and not r.exists(contract.NET_DIR + "/eth0.json")
    assert bytes.fromhex("525400123456") in calls             # eth0 was tried first, until its deadline


# ---- the parsers never raise anything but NetError ------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

_NETCHARS = hs.text(alphabet="0123456789.:abcdefhnoptx/-@[]% \t", max_size=60)


@settings(max_examples=400, deadline=None)
@given(_NETCHARS)
def test_netconf_parsers_fuzz(text):
    for fn in (netconf.parse_ip, netconf.parse_bootif, netconf.parse_url, netconf.parse_mac):
        try:
            fn(text)
        except netconf.NetError:
            pass
    try:
        cmdline.parse("ip=%s BOOTIF=%s fetch=http://%s" % (text, text, text))
    except cmdline.CmdlineError:
        pass


def test_iso_without_an_image_is_undone(fake_machine):
    m, srv, sq = net_machine(fake_machine, "url=http://10.0.2.100/empty.iso ip=dhcp", serve=False)
    iso = m.filesystem("iso9660", label="EMPTY", files={"README": b"nothing here\n"}, size=2 << 20)
    srv.serve("/empty.iso", iso.data)
    r = m.boot()
    _failed(r, "the ISO fetched from http://10.0.2.100/empty.iso holds none of", "README")
    assert r.mount_at(contract.ISO_MOUNT) is None and r.mount_at(contract.TORAM_MOUNT) is None


def test_resume_after_a_failed_fetch_starts_clean(fake_machine):
    import errno as _errno

    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp" % URL)
    m.fail("connect", _errno.ECONNREFUSED, times=5)          # the server is down for the first 5 attempts
    m.console_input = ["resume()"]
    r = m.boot()
    assert_booted(r)
    assert "giving up after 5 attempts" in r.console and "Connection refused" in r.console
    toram = [e for e in r.mount_log if e[0] == "mount" and e[2] == contract.TORAM_MOUNT]
    assert len(toram) == 2 and ("umount", contract.TORAM_MOUNT) in [e[:2] for e in r.mount_log]


# ---- the timeout knobs: dracut's rd.net.timeout.carrier= / rd.net.timeout.dhcp=, our rd.live.http.* -----------

def test_timeout_parameters():
    o = cmdline.parse("rd.net.timeout.carrier=0 rd.net.timeout.dhcp=3 rd.live.http.timeout=2 rd.live.http.retries=0")
    assert (o.net_timeout_carrier, o.net_timeout_dhcp, o.http_timeout, o.http_retries) == (0, 3, 2, 0)
    o = cmdline.parse("root=live:%s" % URL)
    assert (o.net_timeout_carrier, o.net_timeout_dhcp, o.http_timeout, o.http_retries) == (None, None, None, None)


@pytest.mark.parametrize("line", ["rd.net.timeout.carrier=-1", "rd.net.timeout.dhcp=0", "rd.net.timeout.dhcp=1s",
                                  "rd.live.http.timeout=0", "rd.live.http.timeout", "rd.live.http.retries=101",
                                  "rd.live.http.retries=x"])
def test_timeout_parameters_rejected(line):
    with pytest.raises(cmdline.CmdlineError) as e:
        cmdline.parse(line)
    assert e.value.param == line.split("=")[0]


def test_carrier_timeout_overrides_the_deadline(fake_machine):
    # rootdelay=30 would wait 30 s; dracut's parameter says 1.
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp rootdelay=30 rd.net.timeout.carrier=1" % URL,
                             carrier=False)
    r = m.boot()
    _failed(r, "stage 'network'", "did not appear within 1 s", "rd.net.timeout.carrier=")
    assert 1000 <= r.uptime_ms < 2500, r.uptime_ms


def test_dhcp_timeout_bounds_the_exchange(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp rd.net.timeout.dhcp=2" % URL)
    m.net.dhcp = None
    r = m.boot()
    _failed(r, "stage 'network'", "no DHCP lease on eth0 within 2 s each", "rd.net.timeout.dhcp=2")
    assert r.uptime_ms < 4000, r.uptime_ms         # the default: at least 10 s


def test_http_knobs_reach_the_download(fake_machine):
    m, srv, sq = net_machine(fake_machine, "root=live:http://10.0.2.101/x.squashfs ip=dhcp rd.live.http.timeout=2 "
                                           "rd.live.http.retries=1")
    r = m.boot()
    _failed(r, "giving up after 2 attempts", "connect to 10.0.2.101:80")
    assert r.uptime_ms < 8000, r.uptime_ms         # 2 + 1 + 2 s of network waits; the defaults take 65 s
