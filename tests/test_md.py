"""mpinit_agent.md (and storage.py's ordering) on the fake machine: the DIY-initramfs guide's root on LVM on an md
RAID1 with /usr separate, a degraded array, rd.md.uuid=/rd.md=0/rd.lvm.vg=/rd.lvm.lv=, LUKS under and over LVM;
plus the pure parts (commands, /proc/mdstat, UUID forms, LVM names).

The fake mdadm and lvm (mpinit.testing.dm) fail the way the real ones do in a bare initramfs: mdadm without
md_mod/raid1 loaded, lvm without dm_mod or with udev sync left on."""

import pytest

from mpinit.testing import dm
from mpinit_agent import cmdline, devmapper, md

MD = "6d70696e:69744d44:52414944:00000001"
ROOT = "6d70696e-6974-4c56-524f-000000000001"
USR = "6d70696e-6974-4c56-5553-000000000001"


def add_md_modules(m):
    m.add_module("md_mod")
    m.add_module("raid1", depends=("md_mod",))
    m.add_module("dm_mod")
    m.add_module("dm_crypt", depends=("dm_mod",))


def guide_machine(fake_machine, cmdline_text, members=2, present=2, usr=True):
    m = fake_machine(cmdline=cmdline_text)
    add_md_modules(m)
    fstab = "/dev/mapper/vg0-root / ext4 defaults 0 1\n"
    if usr:
        fstab += "/dev/vg0/usr /usr ext4 defaults 0 2\n"
    root = m.filesystem("ext4", uuid=ROOT, files={"sbin/init": m.executable(b"#!/bin/sh\n"), "usr": m.directory(),
                                                  "etc/fstab": fstab})
    lvs = {"root": root}
    if usr:
        lvs["usr"] = m.filesystem("ext4", uuid=USR, files={"share/usr-ok": b"usr\n"})
    disks = dm.raid1(m, MD, dm.lvm_pv(m, "vg0", lvs), members=members)
    for i in range(present):
        m.add_disk("vd" + "abcdef"[i], disks[i])
    dm.install_tools(m, cryptsetup=False)
    return m


def test_root_on_lvm_on_raid1_with_usr_from_fstab(fake_machine):
    m = guide_machine(fake_machine, "rd.md.uuid=%s rd.lvm.vg=vg0 root=/dev/mapper/vg0-root" % MD)
    r = m.boot()
    assert r.handed_off, r.console
    # mounted by their /dev/mapper names (as /proc/mounts shows them under dracut), not as /dev/dm-N
    assert r.mount_at("/")[0] == "/dev/mapper/vg0-root"
    assert r.mount_at("/usr")[0] == "/dev/mapper/vg0-usr" and r.read("/usr/share/usr-ok") == b"usr\n"
    # md_mod and raid1 have no modalias: loaded because assembly was asked for.
    assert r.loaded_modules[:2] == ["md_mod", "raid1"]
    runs = [a for a in r.spawned if a[0].endswith(("mdadm", "lvm"))]
    assert runs[0] == ["/sbin/mdadm", "--assemble", "--scan", "--config=" + md.MDADM_CONF_RUN, "--no-degraded",
                       "--uuid=" + MD]
    assert runs[1][:4] == ["/sbin/lvm", "vgchange", "-ay", "--sysinit"] and runs[1][-1] == "vg0"
    assert "udev_sync=0" in runs[1][5]
    assert "DEGRADED" not in r.console


def test_rd_md_uuid_in_blkid_form_and_default_scan(fake_machine):
    m = guide_machine(fake_machine, "rd.md.uuid=6d70696e-6974-4d44-5241-494400000001 root=/dev/vg0/root", usr=False)
    r = m.boot()
    assert r.handed_off, r.console
    assert "--uuid=" + MD in [a for a in r.spawned if a[0] == "/sbin/mdadm"][0]


def test_everything_by_default_when_the_tools_are_packed(fake_machine):
    m = guide_machine(fake_machine, "root=UUID=%s" % ROOT, usr=False)
    r = m.boot()
    assert r.handed_off, r.console
    lvm = [a for a in r.spawned if a[0] == "/sbin/lvm"][0]
    assert lvm[-1] != "vg0" and lvm[1] == "vgchange"   # no group named: all of them


def test_degraded_array_is_started_with_a_warning(fake_machine):
    m = guide_machine(fake_machine, "rd.md.uuid=%s root=/dev/mapper/vg0-root" % MD, present=1)
    r = m.boot()
    assert r.handed_off, r.console
    assert "RAID array /dev/md127 started DEGRADED: 1 of 2 members" in r.console
    mdadm = [a for a in r.spawned if a[0] == "/sbin/mdadm"]
    assert mdadm[0][4] == "--no-degraded" and ["/sbin/mdadm", "--stop", "/dev/md127"] in mdadm
    assert mdadm[-1][4] == "--run"
    assert 5000 <= r.uptime_ms < 8000  # waited md_degraded_after_ms() for the missing member, not the deadline


def test_degraded_start_within_a_short_rootdelay(fake_machine):
    m = guide_machine(fake_machine, "root=/dev/mapper/vg0-root rootdelay=3", present=1, usr=False)
    r = m.boot()
    assert r.handed_off, r.console
    assert r.uptime_ms < 3000


def test_rd_md_0_and_rd_lvm_0(fake_machine):
    m = guide_machine(fake_machine, "rd.md=0 rd.lvm=0 root=/dev/mapper/vg0-root rootdelay=1", usr=False)
    r = m.boot()
    assert not r.handed_off and not [a for a in r.spawned if a[0].endswith(("mdadm", "lvm"))]


def test_rd_lvm_lv_activates_only_that_volume(fake_machine):
    m = guide_machine(fake_machine, "rd.lvm.lv=vg0/root root=/dev/vg0/root")
    m.console_input = []
    r = m.boot()
    lvm = [a for a in r.spawned if a[0] == "/sbin/lvm"]
    assert lvm[0][1] == "lvchange" and lvm[0][-1] == "vg0/root"
    # /usr is in the root's fstab but its volume was not activated (dracut: list it with rd.lvm.lv= too).
    assert not r.handed_off and "/usr is a separate filesystem (/dev/vg0/usr" in r.console


def test_missing_volume_group_is_reported_with_what_ran(fake_machine):
    m = guide_machine(fake_machine, "rd.lvm.vg=vgX root=/dev/vgX/root rootdelay=1", usr=False)
    r = m.boot()
    assert not r.handed_off
    assert "root device /dev/vgX/root did not appear within 1 s" in r.console
    assert "vgchange -ay --sysinit" in r.console and "exit 5" in r.console


def test_without_md_modules_mdadm_fails_and_says_so(fake_machine):
    m = fake_machine(cmdline="root=/dev/md127 rootdelay=1")
    disks = dm.raid1(m, MD, m.filesystem("ext4", uuid=ROOT))
    m.add_disk("vda", disks[0])
    m.add_disk("vdb", disks[1])
    dm.install_tools(m, cryptsetup=False, lvm=False)
    r = m.boot()
    assert not r.handed_off and "md_mod not loaded" in r.console


def test_lvm_on_luks(fake_machine):
    # The common laptop layout: one LUKS partition holding a volume group.
    m = fake_machine(cmdline="root=/dev/mapper/vg0-root rd.lvm.vg=vg0 rootdelay=3")
    add_md_modules(m)
    root = m.filesystem("ext4", uuid=ROOT, files={"sbin/init": m.executable(b"#!/bin/sh\n")})
    m.add_disk("vda", dm.luks(m, dm.lvm_pv(m, "vg0", {"root": root}), passphrase="pw"))
    dm.install_tools(m)
    m.console_input = ["pw"]
    r = m.boot()
    assert r.handed_off, r.console
    order = [a[0].rsplit("/", 1)[1] + " " + a[1] for a in r.spawned]
    assert order.index("cryptsetup open") < order.index("lvm vgchange", order.index("cryptsetup open"))


def test_luks_on_lvm_on_raid1(fake_machine):
    # md -> LVM -> LUKS: three turns of the settle loop.
    m = fake_machine(cmdline="rd.luks.name=%s=cryptroot root=/dev/mapper/cryptroot rootdelay=3"
                     % "6d70696e-6974-4c55-4b53-0000000000ff")
    add_md_modules(m)
    root = m.filesystem("ext4", uuid=ROOT, files={"sbin/init": m.executable(b"#!/bin/sh\n")})
    crypt = dm.luks(m, root, passphrase="pw", uuid="6d70696e-6974-4c55-4b53-0000000000ff")
    a, b = dm.raid1(m, MD, dm.lvm_pv(m, "vg0", {"crypt": crypt}))
    m.add_disk("vda", a)
    m.add_disk("vdb", b)
    dm.install_tools(m)
    m.console_input = ["pw"]
    r = m.boot()
    assert r.handed_off, r.console
    assert r.mount_at("/")[0] == "/dev/mapper/cryptroot"


# ---- when the tools run (only for members not yet taken) -------------------------------------------------------

def tool_runs(r):
    return [a[0].rsplit("/", 1)[1] + " " + a[1] for a in r.spawned if a[0].endswith(("mdadm", "lvm"))]


def test_each_tool_runs_once_for_the_guide_machine(fake_machine):
    """mdadm once (the array then holds its members), lvm once (the PV is then held by its volumes): no second
    mdadm pass after lvm, no vgchange for the volumes vgchange itself made."""
    m = guide_machine(fake_machine, "rd.md.uuid=%s rd.lvm.vg=vg0 root=/dev/mapper/vg0-root" % MD)
    r = m.boot()
    assert r.handed_off, r.console
    assert tool_runs(r) == ["mdadm --assemble", "lvm vgchange"]
    assert "No arrays found" not in r.console


def test_a_luks_only_boot_runs_neither_mdadm_nor_lvm(fake_machine):
    """mdadm and lvm packed, no md member and no PV anywhere (and nothing asked by name): neither runs."""
    m = fake_machine(cmdline="root=UUID=%s rootdelay=3" % ROOT)
    add_md_modules(m)
    root = m.filesystem("ext4", uuid=ROOT, files={"sbin/init": m.executable(b"#!/bin/sh\n")})
    m.add_disk("vda", dm.luks(m, root, passphrase="pw"))
    dm.install_tools(m)
    m.console_input = ["pw"]
    r = m.boot()
    assert r.handed_off, r.console
    assert tool_runs(r) == [] and [a[1] for a in r.spawned if a[0].endswith("cryptsetup")] == ["open"]
    assert "md_mod" not in r.loaded_modules     # not loaded for nothing either


def test_rd_md_uuid_of_an_absent_array_waits_and_says_no_member_was_seen(fake_machine):
    other = "11111111:22222222:33333333:44444444"
    m = guide_machine(fake_machine, "rd.md.uuid=%s root=/dev/md127 rootdelay=1" % other, usr=False)
    r = m.boot()
    assert not r.handed_off
    assert "mdadm --assemble" not in tool_runs(r)   # the members present belong to another array
    assert "mdadm not run: no md RAID member (TYPE=linux_raid_member) of rd.md.uuid=%s seen" % other in r.console


def test_lvm_asked_by_name_runs_once_after_the_unlock(fake_machine):
    """rd.lvm.vg= with the PV inside LUKS: one settle round unlocks, then activates; lvm runs once, not again for
    the logical volumes it made nor for the PV they now hold."""
    m = fake_machine(cmdline="root=/dev/mapper/vg0-root rd.lvm.vg=vg0 rootdelay=3")
    add_md_modules(m)
    root = m.filesystem("ext4", uuid=ROOT, files={"sbin/init": m.executable(b"#!/bin/sh\n")})
    m.add_disk("vda", dm.luks(m, dm.lvm_pv(m, "vg0", {"root": root}), passphrase="pw"))
    dm.install_tools(m)
    m.console_input = ["pw"]
    r = m.boot()
    assert r.handed_off, r.console
    assert tool_runs(r) == ["lvm vgchange"]


def test_lvm_asked_by_name_without_any_pv_runs_blind_only_late(fake_machine):
    """rd.lvm.vg= and nothing probes as a PV: lvm is not run for every new device from the start, only once the
    wait passed md_degraded_after_ms() (it may know a PV our probe does not); the report says why it did not run
    before."""
    m = fake_machine(cmdline="root=/dev/mapper/vgX-root rd.lvm.vg=vgX rootdelay=8")
    add_md_modules(m)
    m.add_disk("vda", m.filesystem("ext4", uuid=ROOT))
    dm.install_tools(m)
    runs = []

    def lvm(machine, argv, env, stdin=None):
        runs.append(machine.kernel.clock)
        return dm._lvm(machine, argv, env, stdin)
    m.add_program("/sbin/lvm", action=lvm)
    r = m.boot()
    assert not r.handed_off
    assert len(runs) == 1 and runs[0] >= 5000, runs   # md_degraded_after_ms(): min(5 s, 2/3 of rootdelay=8)
    assert "vgchange -ay --sysinit" in r.console and "exit 5" in r.console


def test_no_descriptor_leaks_into_the_tools(fake_machine):
    """/dev/kmsg (log.py) and everything else the agent keeps open is close-on-exec: lvm's "File descriptor 3
    (/dev/kmsg) leaked on lvm invocation" cannot happen."""
    m = guide_machine(fake_machine, "rd.md.uuid=%s rd.lvm.vg=vg0 root=/dev/mapper/vg0-root" % MD)
    r = m.boot()
    assert r.handed_off, r.console
    assert [a for a in r.spawned if a[0].endswith("lvm")], "lvm did not run: the check would prove nothing"
    assert r.leaked_fds == []


def test_the_fake_kernel_sees_a_descriptor_without_cloexec(fake_machine, monkeypatch):
    """The check above can fail: /dev/kmsg opened without O_CLOEXEC (as log.py did) is seen by every tool."""
    from mpinit_agent import syscalls as sc

    monkeypatch.setattr(sc, "O_CLOEXEC", 0)
    m = guide_machine(fake_machine, "rd.md.uuid=%s rd.lvm.vg=vg0 root=/dev/mapper/vg0-root" % MD)
    r = m.boot()
    assert r.handed_off, r.console
    assert ("/sbin/lvm", "/dev/kmsg") in [(p, path) for p, _fd, path in r.leaked_fds]


# ---- pure parts --------------------------------------------------------------------------------------------------

def test_md_commands():
    o = cmdline.parse("rd.md.uuid=a1b2c3d4-e5f60718-293a4b5c-6d7e8f90")
    assert md.md_commands(o, "/sbin/mdadm", "/c", False) == [
        ["/sbin/mdadm", "--assemble", "--scan", "--config=/c", "--no-degraded",
         "--uuid=a1b2c3d4:e5f60718:293a4b5c:6d7e8f90"]]
    assert md.md_commands(cmdline.parse(""), "/sbin/mdadm", "/c", True)[0][-1] == "--run"
    assert md.md_commands(cmdline.parse("rd.md=0"), "/sbin/mdadm", "/c", False) == []
    assert md.md_commands(cmdline.parse(""), None, "/c", False) == []


def test_md_uuid_forms_and_errors():
    assert md.md_uuid("6D70696E-6974-4D44-5241-494400000001") == MD
    assert md.md_uuid(MD) == MD
    with pytest.raises(ValueError, match="rd.md.uuid=xyz"):
        md.md_uuid("xyz")


def test_lvm_commands():
    assert md.lvm_commands(cmdline.parse("rd.lvm.vg=a rd.lvm.vg=b"), "/sbin/lvm") == [
        ["/sbin/lvm", "vgchange", "-ay", "--sysinit", "--config", md.LVM_CONFIG, "a", "b"]]
    assert md.lvm_commands(cmdline.parse("rd.lvm.lv=a/r"), "/sbin/lvm")[0][1] == "lvchange"
    assert md.lvm_commands(cmdline.parse("rd.lvm=0 rd.lvm.lv=a/r"), "/sbin/lvm") == []
    assert md.lvm_commands(cmdline.parse(""), None) == []


def test_parse_mdstat():
    text = ("Personalities : [raid1] [raid6]\n"
            "md127 : active raid1 vdb[1] vda[0]\n      1046528 blocks super 1.2 [2/1] [U_]\n      \n"
            "md1 : inactive vdc[0](S)\n      1046528 blocks super 1.2\n\n"
            "md2 : active (read-only) raid1 vdd[0]\n      10 blocks [2/2] [UU]\n\n"
            "unused devices: <none>\n")
    assert md.parse_mdstat(text) == {"md127": ("active", 2, 1), "md1": ("inactive", 0, 0),
                                     "md2": ("active (read-only)", 2, 2)}
    assert md.parse_mdstat("") == {}


def test_split_lvm_name():
    assert devmapper.split_lvm_name("vg0-root") == ("vg0", "root")
    assert devmapper.split_lvm_name("my--vg-my--lv") == ("my-vg", "my-lv")
    assert devmapper.split_lvm_name("cryptroot") is None
    assert devmapper.split_lvm_name("-x") is None


try:
    from hypothesis import given, strategies as st
except ImportError:
    given = None

if given is not None:
    @given(st.text(alphabet="md0127 :[]/U_()activeinrd-ly\n", max_size=200))
    def test_property_parse_mdstat_never_raises(text):
        for name, (state, total, working) in md.parse_mdstat(text).items():
            assert isinstance(state, str) and total >= 0 and working >= 0
