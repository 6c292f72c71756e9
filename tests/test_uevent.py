"""The uevent reader (mpinit_agent.uevent): the message parser (fuzzed), and the listener over the fake machine's
netlink socket (mpinit.testing.net), which the fake kernel feeds when disks appear."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpinit_agent import syscalls as sc
from mpinit_agent import uevent


def msg(*fields):
    return "".join(f + "\0" for f in fields).encode()


def test_parse_a_kernel_uevent():
    ev = uevent.parse(msg("add@/devices/pci0000:00/0000:00:02.0/virtio1", "ACTION=add",
                          "DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio1", "SUBSYSTEM=virtio",
                          "MODALIAS=virtio:d00000002v00001AF4", "SEQNUM=812"))
    assert ev == {"ACTION": "add", "DEVPATH": "/devices/pci0000:00/0000:00:02.0/virtio1", "SUBSYSTEM": "virtio",
                  "MODALIAS": "virtio:d00000002v00001AF4", "SEQNUM": "812"}


def test_parse_takes_action_and_devpath_from_the_header_when_missing_and_keeps_equals_in_values():
    assert uevent.parse(msg("remove@/devices/x", "A=b=c", "junk")) == {"ACTION": "remove", "DEVPATH": "/devices/x",
                                                                        "A": "b=c"}


@pytest.mark.parametrize("data", [b"", b"\0", b"no header\0ACTION=add\0", b"@/devices/x\0",
                                  b"libudev\0\xfe\xed\xca\xfe" + b"\0" * 32, b"\xff\xfe@\0"])
def test_parse_refuses_what_is_not_a_kernel_uevent(data):
    assert uevent.parse(data) is None


@given(st.binary(max_size=600))
def test_parse_never_raises(data):
    ev = uevent.parse(data)
    assert ev is None or ("ACTION" in ev and "DEVPATH" in ev)


# Text fields (lone surrogates have no UTF-8 form; bytes that are not UTF-8 are test_parse_never_raises' part).
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
                        max_size=30), max_size=12))
def test_parse_never_raises_on_field_lists(fields):
    ev = uevent.parse(msg("add@/devices/y", *fields))
    assert ev["DEVPATH"] in ("/devices/y",) or any(f.startswith("DEVPATH=") for f in fields)


def test_listener_on_the_fake_machine_sees_a_late_disk():
    from mpinit.testing.machine import FakeMachine

    m = FakeMachine()
    m.add_module("virtio_blk")
    m.add_disk("vda", b"\0" * 4096, driver="virtio_blk", appear_after_ms=30)
    seen = {}

    def entry():
        ln = uevent.Listener()
        seen["open"] = ln.open()
        seen["first"] = (ln.read(), ln.wait(10))
        m.kernel.loaded.append("virtio_blk")  # as if finit_module(virtio_blk) had returned now
        m.kernel.load_times["virtio_blk"] = m.kernel.clock
        t0 = sc.uptime_ms()
        while not seen.get("events") and sc.uptime_ms() - t0 < 1000:
            ln.wait(100)
            seen["events"] = ln.read()
        ln.close()
        try:
            sc.socket(sc.AF_NETLINK, sc.SOCK_STREAM, sc.NETLINK_KOBJECT_UEVENT)
        except OSError as e:
            seen["stream"] = e.args[0]

    m.boot(entry=entry)
    assert seen["open"] and seen["first"] == ([], False)
    ev = seen["events"][0]
    assert ev["ACTION"] == "add" and ev["SUBSYSTEM"] == "block" and ev["DEVNAME"] == "vda"
    assert ev["DEVPATH"].endswith("/block/vda") and ev["DEVTYPE"] == "disk"
    assert seen["stream"] > 0


def _block(action, path, **fields):
    return uevent.parse(msg("%s@%s" % (action, path), "ACTION=" + action, "DEVPATH=" + path, "SUBSYSTEM=block",
                            *["%s=%s" % kv for kv in fields.items()]))


def test_listener_keeps_the_block_devices_announced_until_they_go():
    ln = uevent.Listener()
    disk = "/devices/pci0000:00/0000:00:05.0/virtio2/block/vda"
    ln._block(_block("add", disk, MAJOR="254", MINOR="0", DEVNAME="vda", DEVTYPE="disk"))
    ln._block(_block("add", disk + "/vda1", MAJOR="254", MINOR="1", DEVNAME="vda1", DEVTYPE="partition", PARTN="1"))
    # A name with "/" in DEVNAME is keyed by its sysfs name, the DEVPATH's last part.
    ln._block(_block("add", "/devices/x/block/cciss!c0d0", MAJOR="104", MINOR="0", DEVNAME="cciss/c0d0",
                     DEVTYPE="disk"))
    assert sorted(ln.blocks) == ["cciss!c0d0", "vda", "vda1"]
    assert ln.blocks["vda1"]["PARTN"] == "1" and ln.blocks["vda"]["MINOR"] == "0"
    ln._block(_block("remove", disk + "/vda1", MAJOR="254", MINOR="1", DEVNAME="vda1", DEVTYPE="partition"))
    ln._block(_block("change", disk, MAJOR="254", MINOR="0", DEVNAME="vda", DEVTYPE="disk", DISK_MEDIA_CHANGE="1"))
    assert sorted(ln.blocks) == ["cciss!c0d0"]     # gone, or changed: sysfs says what they are now
    ln._block(_block("add", "/devices/x/block/sdz", DEVNAME="sdz", DEVTYPE="disk"))   # no MAJOR/MINOR: not kept
    ln._block(_block("move", "/devices/y/block/sdy", DEVPATH_OLD="/devices/x/block/cciss!c0d0", MAJOR="104",
                     MINOR="0", DEVNAME="sdy", DEVTYPE="disk"))
    assert ln.blocks == {}


def test_listener_on_the_fake_machine_keeps_the_disks_and_partitions_it_read():
    from mpinit.testing.images import Partition
    from mpinit.testing.machine import FakeMachine

    m = FakeMachine()
    m.add_module("virtio_blk")
    m.add_disk("vda", [Partition(b"\0" * 4096)], driver="virtio_blk", appear_after_ms=30)
    seen = {}

    def entry():
        ln = uevent.Listener()
        ln.open()
        m.kernel.loaded.append("virtio_blk")
        m.kernel.load_times["virtio_blk"] = m.kernel.clock
        t0 = sc.uptime_ms()
        while len(ln.blocks) < 2 and sc.uptime_ms() - t0 < 1000:
            ln.wait(100)
            ln.read()
        seen["blocks"] = dict(ln.blocks)
        ln.close()

    m.boot(entry=entry)
    blocks = seen["blocks"]
    assert sorted(blocks) == ["vda", "vda1"]
    assert blocks["vda"]["DEVTYPE"] == "disk" and blocks["vda1"]["DEVTYPE"] == "partition"
    assert blocks["vda1"]["PARTN"] == "1" and blocks["vda1"]["MAJOR"] == blocks["vda"]["MAJOR"]
