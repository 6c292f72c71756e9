"""A raw HTTP/1.1 client for tests that look at the bytes on the wire (the relay, nginx in front of the guest):
one GET written by hand, one response read back framed by its Content-Length, as the agent's client must."""


def send_get(sock, path, extra=""):
    """GET path as the agent sends it (Host 10.0.2.100, Connection: close); extra: more header lines, each ending
    in \\r\\n."""
    sock.sendall(("GET %s HTTP/1.1\r\nHost: 10.0.2.100\r\nConnection: close\r\n%s\r\n" % (path, extra)).encode())


def read_response(sock, buf=b""):
    """One response framed by its Content-Length: (status, headers with lowercase names, body, bytes read past
    it). buf: bytes of it already read."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, "EOF before the response head"
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    n = int(headers["content-length"])
    while len(buf) < n:
        data = sock.recv(65536)
        assert data, "EOF in the body"
        buf += data
    return int(lines[0].split()[1]), headers, buf[:n], buf[n:]
