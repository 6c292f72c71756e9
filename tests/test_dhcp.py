"""mpinit_agent.dhcp: packets built and parsed, checked against a real exchange captured from QEMU's own DHCP
server (slirp, `-netdev user,restrict=on`: the agent's debug log prints the raw replies), the client's state
machine against the fake machine's server (retries, NAK), and the parser fuzzed."""

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from mpinit_agent import dhcp

MAC = bytes.fromhex("525400123456")
# Captured in tests/e2e/test_netboot_http.py's first boot (QEMU 7.2 slirp; xid db6dbbce chosen by the agent): 548 bytes
# each, zero after the END option; the digests are those of the captured packets.
_HEAD = ("02010600db6dbbce00000000000000000a00020f0a000202000000005254001234560000" + "00" * 200
         + "6382536335010%d36040a0002020104ffffff00330400015180ff")
QEMU_OFFER = bytes.fromhex(_HEAD % 2).ljust(548, b"\0")
QEMU_ACK = bytes.fromhex(_HEAD % 5).ljust(548, b"\0")


def test_captured_packets_are_the_real_ones():
    assert hashlib.sha256(QEMU_OFFER).hexdigest() == "7d57ecd3f2e0004c27080cfd310380381d1c3b05809f3bd191ed9039d9b508ef"
    assert hashlib.sha256(QEMU_ACK).hexdigest() == "fac5f2d6cf32d592726268f5d034c1a91c4f8b7b5af8b1ab06e1a933d149d306"


def test_parse_qemu_offer_and_ack():
    offer = dhcp.parse(QEMU_OFFER)
    assert offer.op == 2 and offer.xid == 0xDB6DBBCE and offer.chaddr == MAC
    assert offer.type == dhcp.OFFER and offer.yiaddr == "10.0.2.15" and offer.server_id == "10.0.2.2"
    assert offer.netmask == "255.255.255.0" and offer.lease_s == 86400
    assert offer.routers == [] and offer.dns == []    # restrict=on: slirp gives no router and no DNS server
    ack = dhcp.parse(QEMU_ACK)
    assert ack.type == dhcp.ACK and ack.yiaddr == "10.0.2.15"
    assert dhcp._usable(ack, 0xDB6DBBCE, MAC, (dhcp.ACK,))
    assert not dhcp._usable(ack, 0xDB6DBBCF, MAC, (dhcp.ACK,))          # another client's exchange
    assert not dhcp._usable(ack, 0xDB6DBBCE, b"\x52" * 6, (dhcp.ACK,))


def test_build_discover_and_request():
    d = dhcp.build(dhcp.DISCOVER, 0x01020304, MAC)
    assert len(d) == 300                                   # RFC 1542 minimum
    assert d[0] == 1 and d[1] == 1 and d[2] == 6
    assert struct.unpack_from("!IHH", d, 4) == (0x01020304, 0, 0x8000)   # broadcast flag
    assert d[28:34] == MAC and d[236:240] == b"\x63\x82\x53\x63"
    r = dhcp.build(dhcp.REQUEST, 7, MAC, requested="10.0.2.15", server_id="10.0.2.2", hostname="box")
    opts = dhcp.parse(r).options
    assert opts[53] == b"\x03" and opts[50] == bytes([10, 0, 2, 15]) and opts[54] == bytes([10, 0, 2, 2])
    assert opts[61] == b"\x01" + MAC and opts[12] == b"box" and 1 in opts[55] and 6 in opts[55]


def test_fake_server_understands_our_packets():
    from mpinit.testing.net import DhcpServer

    srv = DhcpServer()
    (offer,) = srv.handle(dhcp.build(dhcp.DISCOVER, 9, MAC))
    r = dhcp.parse(offer)
    assert r.type == dhcp.OFFER and r.yiaddr == "10.0.2.15" and r.routers == ["10.0.2.2"]
    (ack,) = srv.handle(dhcp.build(dhcp.REQUEST, 9, MAC, requested=r.yiaddr, server_id=r.server_id))
    assert dhcp.parse(ack).type == dhcp.ACK and srv.log == ["DISCOVER", "REQUEST"]


@pytest.mark.parametrize("data, why", [
    (b"", "shorter"), (QEMU_OFFER[:239], "shorter"), (QEMU_OFFER[:236] + b"abcd", "magic"),
    (QEMU_OFFER[:240] + b"\x35", "no length"), (QEMU_OFFER[:240] + b"\x35\x05\x01", "past the packet end"),
    (QEMU_OFFER[:240] + b"\x35\x02\x01\x02\xff", "message type"),
    (QEMU_OFFER[:240] + b"\x03\x03\x01\x02\x03\xff", "multiple of 4"),
    (QEMU_OFFER[:240] + b"\x0c\x02a\x07\xff", "control characters"),
])
def test_parse_rejects_malformed_packets(data, why):
    with pytest.raises(dhcp.DhcpError, match=why):
        dhcp.parse(data)


@settings(max_examples=400, deadline=None)
@given(hs.binary(max_size=700))
def test_parse_fuzz_random_bytes(data):
    try:
        dhcp.parse(data)
    except dhcp.DhcpError:
        pass


@settings(max_examples=400, deadline=None)
@given(hs.binary(max_size=120), hs.integers(min_value=240, max_value=262))
def test_parse_fuzz_real_packet_with_mutated_options(tail, cut):
    try:
        dhcp.parse(QEMU_OFFER[:cut] + tail)
    except dhcp.DhcpError:
        pass


# ---- the client's state machine in the fake machine -----------------------------------------------------------

def _client_run(fake_machine, **server):
    m = fake_machine()
    m.add_nic("eth0")
    for k, v in server.items():
        setattr(m.net.dhcp, k, v)
    out = {}

    def entry():
        from mpinit_agent import syscalls as sc

        sc.if_set_flags("eth0", sc.IFF_UP)
        c = dhcp.Client("eth0", sc.if_hwaddr("eth0"))
        try:
            out["lease"] = c.run(sc.uptime_ms() + 30000)
        except dhcp.DhcpError as e:
            out["error"] = e
        out["seen"] = c.seen
        out["clock"] = sc.uptime_ms()
    result = m.boot(entry)
    return m, out, result


def test_client_gets_a_lease(fake_machine):
    m, out, _ = _client_run(fake_machine, hostname="pxe1", domain="lab.example")
    lease = out["lease"]
    assert (lease.address, lease.netmask, lease.router, lease.dns) == ("10.0.2.15", "255.255.255.0", "10.0.2.2",
                                                                      ["10.0.2.3"])
    assert (lease.hostname, lease.domain, lease.lease_s, lease.server) == ("pxe1", "lab.example", 86400, "10.0.2.2")
    assert m.net.dhcp.log == ["DISCOVER", "REQUEST"]


def test_client_retries_with_backoff(fake_machine):
    m, out, _ = _client_run(fake_machine, ignore=3)
    assert out["lease"].address == "10.0.2.15"
    assert m.net.dhcp.log == ["DISCOVER"] * 4 + ["REQUEST"]
    assert out["clock"] >= 1000 + 2000 + 4000            # 1 s, 2 s, 4 s waits before the 4th DISCOVER


def test_client_starts_over_after_a_nak(fake_machine):
    m, out, _ = _client_run(fake_machine, nak=1)
    assert out["lease"].address == "10.0.2.15"
    assert m.net.dhcp.log == ["DISCOVER", "REQUEST", "DISCOVER", "REQUEST"]
    assert any("NAK" in s for s in out["seen"])


def test_client_gives_up_at_the_deadline(fake_machine):
    m = fake_machine()
    m.add_nic("eth0")
    m.net.dhcp = None
    out = {}

    def entry():
        from mpinit_agent import syscalls as sc

        sc.if_set_flags("eth0", sc.IFF_UP)
        c = dhcp.Client("eth0", sc.if_hwaddr("eth0"))
        start = sc.uptime_ms()
        with pytest.raises(dhcp.DhcpError, match="no DHCP lease on eth0"):
            c.run(start + 20000)
        out["took"] = sc.uptime_ms() - start
        out["sent"] = [s for s in c.seen if s == "sent DISCOVER"]
    m.boot(entry)
    assert 20000 <= out["took"] < 21000 and 3 <= len(out["sent"]) <= 6
