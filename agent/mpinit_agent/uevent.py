# The kernel's uevents, read from a netlink socket (netlink(7) NETLINK_KOBJECT_UEVENT, multicast group 1), the
# way udev learns about devices: kmod.Modules uses it to load drivers for devices as they appear (a driver probing
# asynchronously, async_probe=1, registers its children later) and the devices stage to wake up when a block
# device appears instead of re-reading /sys every 100 ms.
#
#   l = Listener()
#   l.open() -> bool                  False when the kernel (or the fake machine) has no uevent socket: callers
#                                     then fall back to scanning sysfs
#   l.wait(timeout_ms) -> bool        True when an event is ready (poll(2)); sleeps the whole timeout otherwise
#   l.read() -> [event dict]          every event queued now, without blocking; l.overflow is set (and stays set
#                                     until the caller clears it) when the kernel dropped events (ENOBUFS: the
#                                     socket's receive buffer was full), so the caller rescans sysfs
#   l.blocks                          block device name -> the fields of its last "add" uevent read so far (what
#                                     its sysfs uevent file holds: MAJOR, MINOR, DEVNAME, DEVTYPE, PARTN); a name
#                                     leaves on any other action, and all leave when events were lost (overflow)
#   l.close()
#   parse(data) -> dict or None       one message: {"ACTION": ..., "DEVPATH": ..., "SUBSYSTEM": ..., ...}
#
# Message format (lib/kobject_uevent.c kobject_uevent_env(), alloc_uevent_skb()): "<action>@<devpath>\0" then
# "KEY=VALUE\0" fields (ACTION, DEVPATH, SUBSYSTEM, SEQNUM, and MODALIAS, DEVNAME, DEVTYPE where they apply). A
# message starting with "libudev" comes from udevd, not the kernel (there is none in an initramfs, but it is not
# ours to read): parse() returns None for it and for anything that is not a uevent.
from micropython import const

from . import syscalls as sc

_UEVENT_GROUP = const(1)       # the kernel's uevents go to group 1 (kobject_uevent_net_broadcast())
_BUF_SIZE = const(8192)        # a uevent is at most UEVENT_BUFFER_SIZE (2048) bytes (include/linux/kobject.h)
_ENOBUFS = const(105)          # include/uapi/asm-generic/errno.h: the receive queue overflowed (netlink(7))
_EAGAIN = const(11)


def parse(data):
    """One uevent message (bytes) -> {KEY: value} with "ACTION" and "DEVPATH" always present, or None when the
    bytes are not a kernel uevent. Never raises for any input."""
    try:
        text = bytes(data).decode()
    except (UnicodeError, TypeError, ValueError):
        return None
    parts = text.split("\0")
    head = parts[0]
    at = head.find("@")
    if at <= 0 or head.startswith("libudev"):
        return None
    ev = {}
    for field in parts[1:]:
        eq = field.find("=")
        if eq > 0:
            ev[field[:eq]] = field[eq + 1:]
    if "ACTION" not in ev:
        ev["ACTION"] = head[:at]
    if "DEVPATH" not in ev:
        ev["DEVPATH"] = head[at + 1:]
    return ev


class Listener:
    def __init__(self):
        self.fd = None
        self.overflow = False
        self._buf = None
        self.blocks = {}

    def open(self):
        if self.fd is not None:
            return True
        try:
            fd = sc.socket(sc.AF_NETLINK, sc.SOCK_DGRAM, sc.NETLINK_KOBJECT_UEVENT)
        except (OSError, AttributeError):
            return False  # no CONFIG_NET, or a recording implementation without it
        try:
            sc.bind_netlink(fd, _UEVENT_GROUP)
        except OSError:
            sc.close(fd)
            return False
        self.fd = fd
        self._buf = bytearray(_BUF_SIZE)
        return True

    def _block(self, ev):
        # The kernel's name of the device (/sys/class/block/<name>) is its DEVPATH's last part (DEVNAME may hold a
        # "/": cciss/c0d0 is cciss!c0d0 in sysfs).
        path = ev["DEVPATH"]
        name = path[path.rfind("/") + 1:]
        if ev["ACTION"] == "add" and "MAJOR" in ev and "MINOR" in ev and "DEVTYPE" in ev:
            self.blocks[name] = ev
        else:
            self.blocks.pop(name, None)   # removed, renamed (move) or changed: sysfs says what it is now
            old = ev.get("DEVPATH_OLD")
            if old:
                self.blocks.pop(old[old.rfind("/") + 1:], None)

    def close(self):
        if self.fd is not None:
            try:
                sc.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def wait(self, timeout_ms):
        if self.fd is None:
            sc.sleep_ms(timeout_ms)
            return False
        try:
            return bool(sc.poll(self.fd, sc.POLLIN, timeout_ms) & sc.POLLIN)
        except OSError:
            return False

    def read(self):
        out = []
        if self.fd is None:
            return out
        buf = self._buf
        while True:
            try:
                if not sc.poll(self.fd, sc.POLLIN, 0) & sc.POLLIN:
                    return out
                n = sc.recv_into(self.fd, buf)
            except OSError as e:
                err = e.args[0] if e.args else 0
                if err == _ENOBUFS:
                    self.overflow = True  # events were lost; the next ones are still readable
                    self.blocks.clear()   # a remove may be among them: sysfs says what is there
                    continue
                if err == _EAGAIN:
                    return out
                return out
            ev = parse(memoryview(buf)[:n])
            if ev is not None:
                if ev.get("SUBSYSTEM") == "block":
                    self._block(ev)
                out.append(ev)
