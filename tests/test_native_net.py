"""The networking calls of `_linux` (agent/native/netsys.c), run inside the built binary.

Host safety: sockets only on 127.0.0.1 (a UDP pair and a TCP listener made by this test), interface calls only
read (if_hwaddr, if_flags of `lo`); nothing here changes an interface, an address or a route. Bad input:
OSError with the expected errno, TypeError or ValueError, and the interpreter carries on."""

import errno
import socket
import threading

import pytest

from mpinit_agent import linux_abi as E
from test_native import PROBE, mpy, run_ok

pytestmark = pytest.mark.runtime

BAD_INPUT = [
    ("L.socket(9999, L.SOCK_DGRAM)", ("OSError", 97)),     # EAFNOSUPPORT (the agent never needs its name)
    ("L.socket('x', 1)", "TypeError"),
    ("L.bind(-1, ('127.0.0.1', 0))", ("OSError", E.EBADF)),
    ("L.bind(L.socket(L.AF_INET, L.SOCK_DGRAM), ('127.0.0.300', 0))", "ValueError"),
    ("L.bind(L.socket(L.AF_INET, L.SOCK_DGRAM), ('127.0.0.1', 70000))", "ValueError"),
    ("L.bind(L.socket(L.AF_INET, L.SOCK_DGRAM), '127.0.0.1')", "TypeError"),
    ("L.connect(-1, ('127.0.0.1', 9), 100)", ("OSError", E.EBADF)),
    ("L.sendto(-1, b'x', ('127.0.0.1', 9))", ("OSError", E.EBADF)),
    ("L.sendto(L.socket(L.AF_INET, L.SOCK_STREAM), b'x')", ("OSError", errno.EPIPE)),
    ("L.recvfrom(-1, 10)", ("OSError", E.EBADF)),
    ("L.recvfrom(0, -1)", "ValueError"),
    ("L.recv_into(-1, bytearray(4))", ("OSError", E.EBADF)),
    ("L.recv_into(0, b'immutable')", "TypeError"),
    ("L.recv_fill(-1, bytearray(4), 1, 0)", ("OSError", E.EBADF)),
    ("L.recv_fill(0, bytearray(4), 5, 0)", "ValueError"),
    ("L.recv_fill(0, bytearray(4), 0, 0)", "ValueError"),
    ("L.recv_fill(0, b'immutable', 1, 0)", "TypeError"),
    ("L.setsockopt(-1, L.SOL_SOCKET, L.SO_BROADCAST, 1)", ("OSError", E.EBADF)),
    ("L.setsockopt(L.socket(L.AF_INET, L.SOCK_DGRAM), L.SOL_SOCKET, L.SO_BINDTODEVICE, 'nosuchif0')",
     ("OSError", E.ENODEV)),
    ("L.poll(-1, L.POLLIN, 0)", "RETURNED 0"),   # poll(2): a negative fd is ignored
    ("L.if_hwaddr('nosuchif0')", ("OSError", E.ENODEV, "nosuchif0")),
    ("L.if_flags('nosuchif0')", ("OSError", E.ENODEV, "nosuchif0")),
    ("L.if_hwaddr('x' * 16)", "ValueError"),
    ("L.if_flags('')", "ValueError"),
    ("L.if_flags(3)", "TypeError"),
    ("L.if_set_addr('nosuchif0', '1.2.3', '255.0.0.0')", "ValueError"),
    ("L.route_add('0.0.0.0', '0.0.0.0', 'gw', 'nosuchif0')", "ValueError"),
]


def _expected(expected):
    if isinstance(expected, str):
        return [expected]
    if len(expected) == 2:
        return ["OSError %d ()" % expected[1]]
    return ["OSError %d %r" % (expected[1], (expected[2],))]


@pytest.mark.parametrize("expr,expected", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input(runtime_binary, expr, expected):
    proc = mpy(runtime_binary, PROBE.format(expr=expr))
    lines = proc.stdout.splitlines()
    assert lines and lines[-1] == "ALIVE", proc.stdout + proc.stderr
    got = lines[:-1]
    if isinstance(expected, str) and expected.startswith("RETURNED"):
        assert got == [expected]
    else:
        assert got == _expected(expected), proc.stdout


def test_loopback_interface_reads(runtime_binary):
    out = run_ok(runtime_binary, """
        import _linux as L
        print(L.if_hwaddr('lo'), L.if_flags('lo') & (L.IFF_UP | 0x8))
        """)
    # 0x8: IFF_LOOPBACK (include/uapi/linux/if.h), which the agent never asks for
    assert out == ["b'\\x00\\x00\\x00\\x00\\x00\\x00' %d" % (0x8 | E.IFF_UP)]


def test_udp_on_loopback(runtime_binary):
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    port = peer.getsockname()[1]
    try:

        def echo():
            data, addr = peer.recvfrom(100)
            peer.sendto(data.upper(), addr)
        t = threading.Thread(target=echo, daemon=True)
        t.start()
        out = run_ok(runtime_binary, """
            import _linux as L
            fd = L.socket(L.AF_INET, L.SOCK_DGRAM, L.IPPROTO_UDP)
            L.setsockopt(fd, L.SOL_SOCKET, L.SO_REUSEADDR, 1)
            L.bind(fd, ('127.0.0.1', 0))
            print(L.poll(fd, L.POLLIN, 50))
            print(L.sendto(fd, b'hello', ('127.0.0.1', %d)))
            print(L.poll(fd, L.POLLIN, 5000) & L.POLLIN)
            data, src = L.recvfrom(fd, 100)
            print(data, src)
            L.close(fd)
            """ % port)
        t.join(5)
        assert out == ["0", "5", str(E.POLLIN), "b'HELLO' ('127.0.0.1', %d)" % port]
    finally:
        peer.close()


def test_tcp_on_loopback(runtime_binary):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    payload = bytes(range(256)) * 1024

    def serve():
        conn, _ = srv.accept()
        with conn:
            req = conn.recv(100)
            conn.sendall(b"got " + req + b"\n" + payload)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()              # bound a moment ago, nobody listens now: connect() is refused
    try:
        out = run_ok(runtime_binary, """
            import _linux as L, hashlib, binascii
            fd = L.socket(L.AF_INET, L.SOCK_STREAM, L.IPPROTO_TCP)
            L.connect(fd, ('127.0.0.1', %d), 5000)
            L.sendto(fd, b'ping')
            buf = bytearray(4096)
            mv = memoryview(buf)
            got = bytearray()
            while True:
                if not L.poll(fd, L.POLLIN, 5000):
                    break
                n = L.recv_into(fd, mv)
                if n == 0:
                    break
                got += mv[:n]
            print(bytes(got[:9]), len(got))
            print(binascii.hexlify(hashlib.sha256(bytes(got[9:])).digest()).decode())
            L.close(fd)
            fd = L.socket(L.AF_INET, L.SOCK_STREAM, L.IPPROTO_TCP)
            try:
                L.connect(fd, ('127.0.0.1', %d), 5000)
            except OSError as e:
                print('refused', e.args[0] == %d)
            """ % (port, closed_port, errno.ECONNREFUSED))
        import hashlib

        assert out == ["b'got ping\\n' %d" % (9 + len(payload)), hashlib.sha256(payload).hexdigest(),
                       "refused True"]
    finally:
        t.join(5)
        srv.close()


def test_recv_fill_waits_for_the_bytes_asked_for_and_tells_a_close_from_a_stall(runtime_binary):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        import time

        conn, _ = srv.accept()
        with conn:
            for i in range(3):              # 30000 bytes in three pieces, apart in time
                conn.sendall(bytes([i]) * 10000)
                time.sleep(0.05)
            conn.recv(2)                    # "go": the client has seen a stall with nothing received
            conn.sendall(b"12345")          # then 5 bytes and silence
            conn.recv(3)                    # "end": then the close
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        out = run_ok(runtime_binary, """
            import _linux as L
            fd = L.socket(L.AF_INET, L.SOCK_STREAM, L.IPPROTO_TCP)
            L.connect(fd, ('127.0.0.1', %d), 5000)
            buf = bytearray(65536)
            n = L.recv_fill(fd, buf, 30000, 5000)
            print(n, buf[0], buf[10000], buf[29999])
            try:
                L.recv_fill(fd, buf, 10, 300)
            except OSError as e:
                print('stall', e.args[0] == L.ETIMEDOUT)
            L.sendto(fd, b'go')
            n = L.recv_fill(fd, buf, 10, 300)
            print(n, bytes(buf[:-n]))
            L.sendto(fd, b'end')
            print(L.recv_fill(fd, buf, 10, 5000))
            L.close(fd)
            """ % port)
        assert out == ["30000 0 1 2", "stall True", "-5 b'12345'", "0"]
    finally:
        t.join(5)
        srv.close()
