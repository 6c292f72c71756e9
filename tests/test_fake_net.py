"""mpinit.testing.net, the fake machine's network: NICs in sysfs behind their driver, link and carrier, the
interface and route calls' errors as the kernel gives them, and the servers' scripted behaviour."""

import errno

import pytest

from mpinit_agent import syscalls as sc


def test_nic_appears_with_its_driver_and_gets_a_carrier(fake_machine):
    m = fake_machine()
    m.add_module("virtio_net", aliases=("virtio:d00000001v*",))
    m.add_nic("eth0", mac="02:00:00:00:00:01", driver="virtio_net", modalias="virtio:d00000001v00001AF4",
              carrier_after_ms=500)
    k = m.start()
    try:
        sc.mount("sysfs", "/sys", "sysfs", 0, None)
        assert sorted(k.fs.listdir("/sys/class/net")) == ["lo"]
        with pytest.raises(OSError) as e:
            sc.if_hwaddr("eth0")
        assert e.value.errno == errno.ENODEV
        sc.load_module("/lib/modules/6.1.0-fake/kernel/virtio_net.ko", "")
        assert sorted(k.fs.listdir("/sys/class/net")) == ["eth0", "lo"]
        assert open("/sys/class/net/eth0/address").read() == "02:00:00:00:00:01\n"
        assert sc.if_hwaddr("eth0") == bytes.fromhex("020000000001")
        assert not sc.if_flags("eth0") & sc.IFF_UP
        sc.if_set_flags("eth0", sc.if_flags("eth0") | sc.IFF_UP)
        assert sc.if_flags("eth0") & sc.IFF_UP and not sc.if_flags("eth0") & sc.IFF_RUNNING
        assert open("/sys/class/net/eth0/carrier").read() == "0\n"
        sc.sleep_ms(500)
        assert sc.if_flags("eth0") & sc.IFF_RUNNING
        assert open("/sys/class/net/eth0/carrier").read() == "1\n"
    finally:
        m.stop()


def test_interface_and_route_errors(fake_machine):
    m = fake_machine()
    m.add_nic("eth0")
    m.start()
    try:
        sc.if_set_flags("eth0", sc.IFF_UP)
        with pytest.raises(OSError) as e:
            sc.route_add("0.0.0.0", "0.0.0.0", "10.0.2.2", "eth0")      # no address: the gateway is off-link
        assert e.value.errno == errno.ENETUNREACH
        sc.if_set_addr("eth0", "10.0.2.15", "255.255.255.0")
        sc.route_add("0.0.0.0", "0.0.0.0", "10.0.2.2", "eth0")
        with pytest.raises(OSError) as e:
            sc.route_add("0.0.0.0", "0.0.0.0", "10.0.2.2", "eth0")
        assert e.value.errno == errno.EEXIST
        fd = sc.socket(sc.AF_INET, sc.SOCK_DGRAM, sc.IPPROTO_UDP)
        with pytest.raises(OSError) as e:
            sc.sendto(fd, b"x", ("255.255.255.255", 67))               # udp(7): broadcast needs SO_BROADCAST
        assert e.value.errno == errno.EACCES
        with pytest.raises(OSError) as e:
            sc.recvfrom(fd, 10)                                          # nothing queued: the agent polls first
        assert e.value.errno == errno.EAGAIN
        before = sc.uptime_ms()
        assert sc.poll(fd, sc.POLLIN, 700) == 0 and sc.uptime_ms() - before >= 700
        sc.close(fd)
        with pytest.raises(OSError) as e:
            sc.poll(fd, sc.POLLIN, 0)
        assert e.value.errno == errno.EBADF
    finally:
        m.stop()


def test_http_server_scripts():
    from mpinit.testing.net import HttpServer

    srv = HttpServer("10.0.2.100", 80)
    srv.serve("/a", b"0123456789", drop_after=4)
    resp, drop, reset = srv.respond(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200 OK\r\n") and resp.endswith(b"\r\n\r\n0123456789")
    assert drop == len(resp) - 10 + 4 and not reset
    resp, drop, _ = srv.respond(b"GET /a HTTP/1.1\r\nRange: bytes=4-\r\nIf-Range: \"other\"\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 200") and drop is None         # a changed file: the whole of it
    resp, _, _ = srv.respond(b"GET /a HTTP/1.1\r\nRange: bytes=4-\r\n\r\n")
    assert b"206 Partial Content" in resp and b"Content-Range: bytes 4-9/10" in resp and resp.endswith(b"456789")
    resp, _, _ = srv.respond(b"GET /a HTTP/1.1\r\nRange: bytes=10-\r\n\r\n")
    assert b"416" in resp
    assert srv.respond(b"GET /nope HTTP/1.1\r\n\r\n")[0].startswith(b"HTTP/1.1 404")
