"""Coldplug's deferral of slow legacy controllers (kmod.py DEFERRED): PCI IDE drivers wait until a device is waited
for, in the loader alone (pyfakefs + a recording syscall boundary) and in whole boots on the fake machine."""

import pytest

from mpinit import kmod as hostkmod
from mpinit_agent import contract, kmod
from test_kmod import PCI_VIRTIO, TABLE, UeventRecorder, mod, rec, sysfs_device  # noqa: F401 (fixtures)
from test_main import live_stick
from mpinit_agent import syscalls as sc

IDE = "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80"          # QEMU pc: PIIX3 IDE, class 01 sub 01
AHCI = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"         # QEMU q35: ICH9 AHCI, class 01 sub 06
VIRTIO_PCI = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"

MODULES = [
    mod("virtio_ring"), mod("virtio", ["virtio_ring"]),
    mod("virtio_pci", ["virtio", "virtio_ring"], aliases=["pci:v00001AF4d*sv*sd*bc*sc*i*"]),
    mod("virtio_blk", ["virtio", "virtio_ring"], aliases=["virtio:d00000002v*"]),
    mod("scsi_common"), mod("scsi_mod", ["scsi_common"]), mod("libata", ["scsi_mod"]),
    mod("ata_piix", ["libata"], aliases=["pci:v00008086d00007010sv*sd*bc*sc*i*"]),
    mod("ahci", ["libata"], aliases=["pci:v*d*sv*sd*bc01sc06i01*"]),
    mod("md_mod"), mod("raid1", ["md_mod"]),
]


def write_table(fs, modules=MODULES):
    fs.create_file(TABLE, contents=hostkmod.make_table("6.1.0", modules, builtin=["ext4"]))


def machine_sysfs(fs, ide=True, ahci=False):
    sysfs_device(fs, PCI_VIRTIO, VIRTIO_PCI, bus="pci")
    if ide:
        sysfs_device(fs, "/sys/devices/pci0000:00/0000:00:01.1", IDE, bus="pci")
    if ahci:
        sysfs_device(fs, "/sys/devices/pci0000:00/0000:00:1f.2", AHCI, bus="pci")


def test_slow_means_pci_ide_only():
    assert kmod._slow(IDE)
    assert not kmod._slow(AHCI) and not kmod._slow(VIRTIO_PCI)
    assert not kmod._slow("pci:v00008086d00007010sv*bc06sc01i00")  # an ISA bridge, class 06 sub 01
    assert not kmod._slow("usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00")


def test_first_pass_defers_ide_until_load_deferred(rec, fs):
    write_table(fs)
    machine_sysfs(fs, ahci=True)
    m = kmod.Modules(table_path=TABLE)
    assert m.coldplug() == ["virtio_ring", "virtio", "virtio_pci", "scsi_common", "scsi_mod", "libata", "ahci"]
    assert m.deferred == ["ata_piix"] and "ata_piix" not in rec.names
    assert m.coldplug() == [] and m.deferred == ["ata_piix"]   # a later pass (a NIC's wait) leaves it
    assert m.load_deferred() == ["ata_piix"]
    assert m.deferred == [] and m.load_deferred() == [] and m.coldplug() == []
    assert rec.names.count("ata_piix") == 1


def test_wait_event_loads_the_deferred_before_the_queued_modules(rec, fs, monkeypatch):
    write_table(fs)
    machine_sysfs(fs)
    m = kmod.Modules(table_path=TABLE)
    m.coldplug()
    m.start(["raid1"])
    before = len(rec.names)
    monkeypatch.setattr(sc, "sleep_ms", lambda ms: None)
    m.wait_event(10)
    assert rec.names[before:] == ["scsi_common", "scsi_mod", "libata", "ata_piix", "md_mod", "raid1"]


def test_defer_off_loads_ide_in_the_first_pass(rec, fs):
    write_table(fs)
    machine_sysfs(fs)
    m = kmod.Modules(table_path=TABLE)
    m.defer = False
    assert "ata_piix" in m.coldplug() and m.deferred == []


def test_a_deferred_driver_asked_for_by_name_loads_once(rec, fs):
    write_table(fs)
    machine_sysfs(fs)
    m = kmod.Modules(table_path=TABLE)
    m.coldplug()
    assert m.load("ata_piix") is True          # the REPL's modprobe("ata_piix")
    assert m.load_deferred() == [] and rec.names.count("ata_piix") == 1


def test_deferred_ide_loads_with_async_probe_when_listening(fs):
    r = UeventRecorder()
    saved = sc.use(r)
    try:
        write_table(fs)
        machine_sysfs(fs)
        m = kmod.Modules(table_path=TABLE)
        m.coldplug()
        assert m.load_deferred() == ["scsi_common", "scsi_mod", "libata", "ata_piix"]
        params = dict((p.rsplit("/", 1)[-1], a) for p, a in r.calls)
        assert params["ata_piix.ko"] == "async_probe=1" and params["libata.ko"] == ""
    finally:
        sc.restore(saved)


def test_load_shipped_skips_what_the_image_lacks_and_what_is_loaded(rec, fs):
    write_table(fs)
    m = kmod.Modules(table_path=TABLE)
    assert m.load_shipped(["md_mod", "raid1", "raid456", "ext4"]) == ["md_mod", "raid1"]
    assert m.load_shipped(["md_mod", "raid1"]) == [] and rec.names == ["md_mod", "raid1"] and m.failed == []


def test_classes_without_a_matching_alias_are_not_read(rec, fs, monkeypatch):
    """/sys/class is read only for classes the table has aliases for (most of its devices have no modalias)."""
    write_table(fs, MODULES + [mod("evdev", aliases=["input:b0011v*"])])
    sysfs_device(fs, "/sys/devices/platform/i8042/serio0/input/input1", "input:b0011v0001p0001eAB41-e0", cls="input")
    sysfs_device(fs, "/sys/devices/virtual/dmi/id", "dmi:bvnSeaBIOS", cls="dmi")
    fs.create_dir("/sys/bus/pci/devices")
    read = []
    real = kmod._read_modalias
    monkeypatch.setattr(kmod, "_read_modalias", lambda dev, found: (read.append(dev), real(dev, found)))
    m = kmod.Modules(table_path=TABLE)
    assert m.coldplug() == ["evdev"]
    assert "/sys/class/input/input1" in read and not [d for d in read if "/dmi/" in d]


def test_classes_reached_by_a_loose_key_are_read(rec, fs):
    write_table(fs, [mod("anything", aliases=["dm*"])])
    sysfs_device(fs, "/sys/devices/virtual/dmi/id", "dmi:bvnSeaBIOS", cls="dmi")
    fs.create_dir("/sys/bus/pci/devices")
    assert kmod.Modules(table_path=TABLE).coldplug() == ["anything"]


# ---- whole boots on the fake machine ----------------------------------------------------------------------------

def ide_machine(fake_machine, cmdline):
    m = fake_machine(cmdline=cmdline)
    for row in MODULES:
        m.add_module(row["name"], depends=row["depends"], aliases=row["aliases"])
    return m


def test_a_medium_on_virtio_never_loads_ide(fake_machine):
    m = ide_machine(fake_machine, "root=live:LABEL=MPLIVE")
    m.add_disk("vda", live_stick(m))
    m.add_disk("sda", m.filesystem("ext4", label="OTHER"), driver="ata_piix", modalias=IDE, appear_after_ms=150)
    r = m.boot()
    assert r.handed_off, r.console
    assert "ata_piix" not in r.loaded_modules and "libata" not in r.loaded_modules


def test_a_medium_behind_ide_is_found_at_the_first_wait(fake_machine):
    m = ide_machine(fake_machine, "root=live:LABEL=MPLIVE")
    m.add_disk("sr0", live_stick(m), driver="ata_piix", modalias=IDE, appear_after_ms=150)
    r = m.boot()
    assert r.handed_off, r.console
    assert "ata_piix" in r.loaded_modules
    line = [k for k in r.kmsg if "mpinit: devices: LABEL=MPLIVE is /dev/sr0" in k][0]
    waited = int(line.split(" block devices, ")[1].split(" ms")[0])
    assert 150 <= waited < 250, line   # the disk's own 150 ms after ata_piix's load, not a poll interval more


def test_rd_mpinit_defer_0_loads_ide_in_the_modules_stage(fake_machine):
    m = ide_machine(fake_machine, "root=live:LABEL=MPLIVE rd.mpinit.defer=0")
    m.add_disk("vda", live_stick(m))
    m.add_disk("sda", m.filesystem("ext4", label="OTHER"), driver="ata_piix", modalias=IDE)
    r = m.boot()
    assert r.handed_off, r.console
    assert "ata_piix" in r.loaded_modules


@pytest.mark.parametrize("cmdline", ["root=live:", "root=live:LABEL=NOPE rootdelay=0"])
def test_looking_at_every_device_or_giving_up_loads_ide_first(fake_machine, cmdline):
    m = ide_machine(fake_machine, cmdline)
    m.add_disk("vda", m.filesystem("ext4", label="OTHER"))
    m.add_disk("sda", m.filesystem("ext4", label="IDE"), driver="ata_piix", modalias=IDE)
    r = m.boot()
    assert "ata_piix" in r.loaded_modules, r.console


def test_usr_behind_ide_is_waited_for(fake_machine):
    m = ide_machine(fake_machine, "root=UUID=6d70696e-6974-4653-434b-000000000001 rootdelay=5")
    fstab = "UUID=6d70696e-6974-4653-434b-000000000002 /usr ext4 defaults 0 0\n"
    m.add_disk("vda", m.filesystem("ext4", uuid="6d70696e-6974-4653-434b-000000000001",
                                   files={"sbin/init": m.executable(b"#!/bin/sh\n"), "usr": m.directory(),
                                          "etc/fstab": fstab}))
    m.add_disk("sda", m.filesystem("ext4", uuid="6d70696e-6974-4653-434b-000000000002"), driver="ata_piix",
               modalias=IDE, appear_after_ms=150)
    r = m.boot()
    assert r.handed_off, r.console
    assert [k for k in r.kmsg if "/usr from /dev/sda" in k] and "ata_piix" in r.loaded_modules


def test_persistence_behind_ide_is_found_after_the_disks_present(fake_machine):
    """The persistence search looks at the disks present first; not found there, the deferred IDE driver loads
    before the first poll (a volume on virtio never pays for it: test_a_medium_on_virtio_never_loads_ide)."""
    from test_persist import persist_fs

    m = ide_machine(fake_machine, "root=live:LABEL=MPLIVE rootdelay=5 persistence")
    m.add_disk("vda", live_stick(m))
    m.add_disk("sda", persist_fs(m, files={"persistence.conf": "/ union\n"}), driver="ata_piix", modalias=IDE,
               appear_after_ms=150)
    r = m.boot()
    assert r.handed_off, r.console
    assert "ata_piix" in r.loaded_modules
    assert r.mount_at(contract.PERSIST_MOUNT)[0] == "/dev/sda", r.kmsg[-20:]


def test_a_network_boot_waiting_for_carrier_never_loads_ide(fake_machine):
    from test_net import URL, assert_booted, net_machine

    m, srv, sq = net_machine(fake_machine, "root=live:%s ip=dhcp" % URL, carrier_after_ms=800)
    for row in MODULES:
        m.add_module(row["name"], depends=row["depends"], aliases=row["aliases"])
    m.add_disk("sda", m.filesystem("ext4", label="OTHER"), driver="ata_piix", modalias=IDE)
    r = m.boot()
    assert_booted(r)
    assert "virtio_net" in r.loaded_modules and "ata_piix" not in r.loaded_modules
