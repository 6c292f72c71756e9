"""mpinit_agent.dns: queries, responses with compression and CNAME chains, errors, the resolver against the fake
machine's DNS server, and the response parser fuzzed."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from mpinit.testing.net import dns_answer
from mpinit_agent import dns


def test_query_layout():
    q = dns.build_query(0x1234, "boot.example.org.")
    assert q[:12] == struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    assert q[12:] == b"\x04boot\x07example\x03org\x00\x00\x01\x00\x01"
    for bad in ("", "a" * 64 + ".org", "a..b"):
        with pytest.raises(dns.DnsError):
            dns.build_query(1, bad)


@pytest.mark.parametrize("compress", [True, False])
def test_answers_with_and_without_compression(compress):
    q = dns.build_query(7, "Boot.Example.org")
    a = dns_answer(q, {"boot.example.org": ["192.0.2.1", "192.0.2.2"]}, compress=compress)
    assert dns.parse_response(a, 7, "boot.example.org") == ["192.0.2.1", "192.0.2.2"]


def _rr(name_bytes, rtype, rdata):
    return name_bytes + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata


def test_cname_chain_in_one_response():
    q = dns.build_query(9, "www.example.org")
    body = q[12:]
    cname_target = b"\x03cdn\xc0\x10"                  # cdn.example.org: pointer to "example.org" in the question
    answers = _rr(b"\xc0\x0c", 5, cname_target) + _rr(b"\x03cdn\xc0\x10", 1, bytes([198, 51, 100, 7]))
    resp = struct.pack("!HHHHHH", 9, 0x8180, 1, 2, 0, 0) + body + answers
    assert dns.parse_response(resp, 9, "www.example.org") == ["198.51.100.7"]


@pytest.mark.parametrize("mutate, why", [
    (lambda r: r[:11], "shorter"),
    (lambda r: r[:2] + b"\x01\x00" + r[4:], "not a response"),
    (lambda r: r[:3] + b"\x83" + r[4:], "NXDOMAIN"),
    (lambda r: r[:-3], "past the end"),
    (lambda r: r[:-16] + b"\xc0\xff" + r[-14:], "past the end"),     # a pointer beyond the message
])
def test_bad_responses(mutate, why):
    q = dns.build_query(5, "a.example")
    r = dns_answer(q, {"a.example": "192.0.2.9"})
    with pytest.raises(dns.DnsError, match=why):
        dns.parse_response(mutate(r), 5, "a.example")


def test_pointer_loop_is_refused():
    resp = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c"
    with pytest.raises(dns.DnsError, match="loop"):
        dns.parse_response(resp, 1, "x")


def test_wrong_id():
    q = dns.build_query(5, "a.example")
    with pytest.raises(dns.DnsError, match="does not match"):
        dns.parse_response(dns_answer(q, {"a.example": "192.0.2.9"}), 6, "a.example")


@settings(max_examples=500, deadline=None)
@given(hs.binary(max_size=600))
def test_parse_fuzz_random(data):
    try:
        dns.parse_response(data, struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0, "a.example")
    except dns.DnsError:
        pass


@settings(max_examples=500, deadline=None)
@given(hs.binary(min_size=1, max_size=40), hs.integers(min_value=12, max_value=60))
def test_parse_fuzz_mutated_answer(junk, at):
    good = dns_answer(dns.build_query(3, "host.example"), {"host.example": ["192.0.2.1", "192.0.2.3"]})
    try:
        dns.parse_response(good[:at] + junk + good[at + len(junk):], 3, "host.example")
    except dns.DnsError:
        pass


def _resolve_in(fake_machine, records, servers, configure=True):
    m = fake_machine()
    m.add_nic("eth0")
    m.net.dns_records.update(records)
    out = {}

    def entry():
        from mpinit_agent import syscalls as sc

        sc.if_set_flags("eth0", sc.IFF_UP)
        if configure:
            sc.if_set_addr("eth0", "10.0.2.15", "255.255.255.0")
        tried = []
        try:
            out["addrs"] = dns.resolve("boot.example.org", servers, tried)
        except dns.DnsError as e:
            out["error"] = str(e)
        out["tried"] = tried
    m.boot(entry)
    return out


def test_resolver_asks_the_next_server(fake_machine):
    out = _resolve_in(fake_machine, {"boot.example.org": "10.0.2.50"}, ["10.0.2.9", "10.0.2.3"])
    assert out["addrs"] == ["10.0.2.50"]
    assert "no answer" in out["tried"][0] and "10.0.2.3" in out["tried"][1]


def test_resolver_nxdomain(fake_machine):
    out = _resolve_in(fake_machine, {}, ["10.0.2.3"])
    assert "NXDOMAIN" in out["error"] and "boot.example.org" in out["error"]


def test_resolver_without_servers(fake_machine):
    out = _resolve_in(fake_machine, {}, [])
    assert "no DNS server" in out["error"]


def test_fake_server_answers_a_cname_chain():
    q = dns.build_query(9, "boot.example.org")
    a = dns_answer(q, {"mirror2.example.net": "192.0.2.7"},
                   cnames={"boot.example.org": "mirror.example.net", "mirror.example.net": "mirror2.example.net"})
    assert struct.unpack_from("!H", a, 6)[0] == 3          # two CNAME records and the A record
    assert dns.parse_response(a, 9, "boot.example.org") == ["192.0.2.7"]


# ---- whole boots of the fake machine: root=live:http://<name>/... (issue 11) ------------------------------------
# QEMU's restrict=on network gives no DNS server and guestfwd carries TCP only, so name resolution in a network
# boot is covered here, end to end through the agent's stages, and not in tests/e2e.

NAME = "boot.example.org"
URL = "http://%s/live/filesystem.squashfs" % NAME


def _dns_machine(fake_machine, cmdline_, dhcp_dns=("10.0.2.3",)):
    m = fake_machine(cmdline=cmdline_, ram_mb=1024)
    m.add_module("virtio_net", aliases=("virtio:d00000001v*",))
    m.add_nic("eth0", driver="virtio_net", modalias="virtio:d00000001v00001AF4")
    m.net.dhcp.dns = tuple(dhcp_dns)
    sq = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\n"), "etc/os-release": b"ID=netboot\n"}, size=1 << 20)
    srv = m.add_http_server("10.0.2.100")
    srv.serve("/live/filesystem.squashfs", sq.data)
    return m, srv


def _booted(r):
    assert r.handed_off, r.console[-3000:]
    assert r.read("/etc/os-release") == b"ID=netboot\n"


def _report(r):
    assert not r.handed_off, r.console[-3000:]
    at = r.console.find("boot failed")
    assert at >= 0, r.console[-3000:]
    return r.console[at:]


def _servers_asked(m):
    return [server for server, _ in m.net.dns_asked]


def test_boot_by_name_with_dns_servers_from_dhcp(fake_machine):
    m, srv = _dns_machine(fake_machine, "root=live:%s ip=dhcp" % URL, dhcp_dns=("10.0.2.3", "10.0.2.4"))
    m.net.dns_records[NAME] = "10.0.2.100"
    r = m.boot()
    _booted(r)
    assert _servers_asked(m) == ["10.0.2.3"]                  # the first DHCP server answered
    assert srv.log == [("GET", "/live/filesystem.squashfs", None)]
    assert "dns 10.0.2.3 10.0.2.4" in "".join(r.kmsg)         # the network stage's summary


def test_boot_by_name_through_a_cname(fake_machine):
    m, srv = _dns_machine(fake_machine, "root=live:%s ip=dhcp" % URL)
    m.net.dns_cnames[NAME] = "mirror.example.net"
    m.net.dns_records["mirror.example.net"] = "10.0.2.100"
    r = m.boot()
    _booted(r)
    assert len(m.net.dns_log) == 1 and srv.log


@pytest.mark.parametrize("ip", [
    "10.0.2.77::10.0.2.2:255.255.255.0::eth0:off:10.0.2.53:10.0.2.54",     # static, dns0 and dns1
    ":::::eth0:dhcp:10.0.2.53:10.0.2.54",                                   # DHCP, ip='s servers win over its own
])
def test_dns_servers_from_ip_and_a_timeout_falls_over_to_dns1(fake_machine, ip):
    m, srv = _dns_machine(fake_machine, "root=live:%s ip=%s" % (URL, ip))
    m.net.dns_servers = ["10.0.2.54"]                          # dns0 (10.0.2.53) never answers
    m.net.dns_records[NAME] = "10.0.2.100"
    r = m.boot()
    _booted(r)
    asked = m.net.dns_asked
    assert [s for s, _ in asked] == ["10.0.2.53", "10.0.2.54"], asked
    assert asked[1][1] - asked[0][1] >= 2000                  # dns0's timeout (dns._TIMEOUT_MS), then dns1


def test_nxdomain_names_the_name_and_the_server_asked(fake_machine):
    m, srv = _dns_machine(fake_machine, "root=live:%s ip=dhcp" % URL, dhcp_dns=("10.0.2.3", "10.0.2.4"))
    r = m.boot()
    report = _report(r)
    assert "stage 'medium'" in report and "cannot resolve %s: 10.0.2.3: server says no such name (NXDOMAIN)" % NAME \
        in report, report[:3000]
    assert "DNS servers: 10.0.2.3 10.0.2.4" in report
    assert _servers_asked(m) == ["10.0.2.3"]                  # NXDOMAIN is final: the next server is not asked
    assert not srv.log


def test_no_dns_answer_lists_every_server_asked(fake_machine):
    m, srv = _dns_machine(fake_machine, "root=live:%s ip=:::::eth0:dhcp:10.0.2.53:10.0.2.54" % URL)
    m.net.dns_servers = []                                     # nobody answers
    r = m.boot()
    report = _report(r)
    assert ("cannot resolve %s: 10.0.2.53: no answer within 2000 ms; 10.0.2.54: no answer within 2000 ms"
            % NAME) in report, report[:3000]
    assert _servers_asked(m) == ["10.0.2.53", "10.0.2.54"] * 2   # two rounds (dns._ATTEMPTS)
    assert not srv.log


def test_a_name_without_dns_servers(fake_machine):
    m, srv = _dns_machine(fake_machine, "root=live:%s ip=dhcp" % URL, dhcp_dns=())
    report = _report(m.boot())
    assert "cannot resolve %s: no DNS server" % NAME in report and "ip=...:<dns0>" in report


def test_a_send_failure_is_named_by_errno_and_text(fake_machine):
    import errno
    import os

    out = _resolve_in(fake_machine, {}, ["10.0.2.3"], configure=False)   # no address: nowhere to send from
    assert "10.0.2.3: errno %d: %s" % (errno.ENETUNREACH, os.strerror(errno.ENETUNREACH)) in out["error"], out
