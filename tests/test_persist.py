"""The persistence stage on the fake machine: every convention's parameters, where the layer is found, the layouts,
readonly/reset, and every way a layer is refused (the boot goes on with a tmpfs upper and a loud warning)."""

import errno

import pytest

from mpinit_agent import cmdline, contract, persist

P = contract.PERSIST_MOUNT
MiB = 1 << 20


# ---- the kernel parameters --------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, family, labels, spec, directory", [
    ("boot=live persistence", "live-boot", ["persistence"], None, None),
    ("boot=live persistence persistence-label=a,b persistence-path=/p/", "live-boot", ["a", "b"], None, "/p"),
    ("boot=casper persistent", "casper", ["writable", "casper-rw"], None, None),
    ("boot=casper persistent persistent-path=/keep", "casper", ["writable", "casper-rw"], None, "/keep"),
    ("archisolabel=ARCH cow_label=cow", "archiso", [], "LABEL=cow", None),
    ("archisolabel=ARCH cow_device=UUID=1234-ab cow_directory=mine", "archiso", [], "UUID=1234-ab", "/mine"),
    ("cow_device=/dev/sdb2", "archiso", [], "/dev/sdb2", None),
    ("rd.live.image rd.overlay=LABEL=x:/LiveOS/overlay", "dracut", [], "LABEL=x", "/LiveOS/overlay"),
    ("rd.live.image rd.live.overlay=/dev/sdb1", "dracut", [], "/dev/sdb1", None),
    ("rd.live.image rd.overlay=PARTUUID=ab-01:/o", "dracut", [], "PARTUUID=ab-01", "/o"),
    ("boot=live mpinit.persist=LABEL=keep:/dir", "mpinit", [], "LABEL=keep", "/dir"),
    ("boot=live mpinit.persist=/stick/persist.img", "mpinit", [], "/stick/persist.img", None),
])
def test_parameters_of_each_convention(line, family, labels, spec, directory):
    o = cmdline.parse(line)
    assert (o.persist, o.persist_labels, o.persist_spec, o.persist_dir) == (family, labels, spec, directory)
    assert "persist" in o.as_dict()


def test_no_persistence_by_default_and_off_switches():
    assert cmdline.parse("boot=live").persist is None
    for off in ("nopersistence", "nopersistent", "mpinit.persist=off", "rd.overlay=none"):
        assert cmdline.parse("boot=live persistence cow_label=x " + off).persist is None, off
    # rd.overlay with a boolean is dracut-ng's "an OverlayFS root" switch, which a live boot always has.
    assert cmdline.parse("rd.live.image rd.overlay=1").persist is None
    assert cmdline.parse("rd.live.image rd.overlay").persist is None


def test_the_command_line_wins_over_the_baked_in_default():
    assert cmdline.parse("boot=live nopersistence", defaults="persistence").persist is None
    assert cmdline.parse("boot=live persistence", defaults="nopersistence").persist == "live-boot"
    o = cmdline.parse("boot=live cow_label=b", defaults="cow_label=a")
    assert o.persist_spec == "LABEL=b"


def test_readonly_reset_storage_and_flags():
    o = cmdline.parse("persistence persistence-read-only persistence-storage=directory,file")
    assert o.persist_readonly and o.persist_storage == ["directory", "file"]
    for word in ("rd.overlay.readonly", "rd.live.overlay.readonly", "rd.overlay.readonly=1"):
        assert cmdline.parse(word).persist_readonly
    for word in ("rd.overlay.reset", "rd.live.overlay.reset"):
        assert cmdline.parse(word).persist_reset
    assert cmdline.parse("cow_label=c cow_flags=noatime,commit=60").persist_flags == "noatime,commit=60"


@pytest.mark.parametrize("line, words", [
    ("persistence=1", "takes no value"),
    ("persistence-storage=cloud", "persistence-storage=cloud"),
    ("persistence-label=,", "labels"),
    ("persistence-path=../x", "no .."),
    ("cow_label=", "needs a value"),
    ("cow_device=FOO=bar", "unknown key"),
    ("rd.overlay=WHAT=x:/p", "unknown key"),
    ("rd.overlay.readonly=maybe", "expected 1/0"),
])
def test_bad_values_name_the_parameter(line, words):
    with pytest.raises(cmdline.CmdlineError, match=words):
        cmdline.parse(line)


# ---- machines ---------------------------------------------------------------------------------------------------

def medium_fs(m, files=None, fstype="vfat", label="MPLIVE"):
    squash = m.squashfs({"sbin/init": m.executable(b"#!/bin/sh\n"), "etc/os-release": b"ID=demo\n",
                         "home/.keep": b""})
    content = {"live/filesystem.squashfs": squash}
    content.update(files or {})
    return m.filesystem(fstype, label=label, uuid="4D50-4C56" if fstype == "vfat" else None, files=content)


def persist_fs(m, label="persistence", files=None, fstype="ext4", size=8 * MiB, uuid=None):
    return m.filesystem(fstype, label=label, uuid=uuid, files=files, size=size)


def stick(m, cmdline_text, persistence=None, medium_files=None, ro=False, **kw):
    """A machine with one stick: the live medium partition, then the persistence partition (when given)."""
    m_ = m(cmdline=cmdline_text, **kw)
    parts = [m_.partition(medium_fs(m_, medium_files), partlabel="live")]
    if persistence is not None:
        parts.append(m_.partition(persistence(m_), partlabel="keep", partuuid="6d70696e-0000-4000-8000-000000000002"))
    m_.add_disk("sda", parts, removable=True, ro=ro)
    return m_


def root_data(r):
    top = r.mount_at("/")
    assert top is not None and top[2] == "overlay", r.console
    return top[4]


def persisted(r, line=None):
    lines = [x for x in r.kmsg if "persistence:" in x]
    return "\n".join(lines)


LIVE = "root=live:LABEL=MPLIVE rootdelay=1 "


# ---- live-boot --------------------------------------------------------------------------------------------------

def test_live_boot_label_with_whole_root_union(fake_machine):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={
        "persistence.conf": "/ union\n", "rw/etc/saved": "from the last session\n"}))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/rw,workdir=%s/work" % (P, P) in root_data(r)
    assert r.mount_at(P)[:3] == ("/dev/sda2", P, "ext4")
    assert not r.mount_at(P)[3] & persist.sc.MS_RDONLY
    assert r.read("/etc/saved") == b"from the last session\n"     # the upper layer from the volume is the root's
    assert r.read("/etc/os-release") == b"ID=demo\n"              # the image below it
    assert r.mount_at(contract.COW_MOUNT) is None                 # no tmpfs upper


def test_upper_and_work_are_created_with_mode_0755(fake_machine, fs):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={"persistence.conf": "/ union"}))
    r = m.boot()
    assert r.handed_off, r.console
    import os

    for d in ("rw", "work"):
        assert os.stat("%s/%s" % (P, d)).st_mode & 0o777 == 0o755


def test_persistence_label_list_is_tried_in_order(fake_machine):
    m = stick(fake_machine, LIVE + "persistence persistence-label=first,second",
              lambda m: persist_fs(m, label="second", files={"persistence.conf": "/ union"}))
    r = m.boot()
    assert r.handed_off and "upperdir=%s/rw" % P in root_data(r), r.console


def test_live_boot_volume_without_persistence_conf_is_not_used(fake_machine):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/upper" % contract.COW_MOUNT in root_data(r)
    assert "NOT USED" in r.console and "no persistence.conf" in r.console
    assert r.mount_at(P) is None                                  # nothing left half-mounted


def test_missing_volume_boots_without_and_says_what_was_looked_for(fake_machine):
    m = stick(fake_machine, LIVE + "persistence")
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/upper" % contract.COW_MOUNT in root_data(r)
    assert "did not find live-boot persistence (a volume labelled persistence or a file /persistence)" in r.console
    assert r.uptime_ms >= 1000        # it waited (rootdelay=1) for a late stick


def test_a_late_persistence_stick_is_waited_for(fake_machine):
    m = fake_machine(cmdline=LIVE.replace("rootdelay=1", "rootdelay=10") + "persistence")
    m.add_disk("sda", medium_fs(m), removable=True)
    m.add_disk("sdb", persist_fs(m, files={"persistence.conf": "/ union"}), removable=True, appear_after_ms=3000)
    r = m.boot()
    assert r.handed_off and r.mount_at(P)[0] == "/dev/sdb", r.console


def test_custom_bind_and_union_lines(fake_machine):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={
        "persistence.conf": "/home bind,source=homes\n/var/cache union\n", "homes/me/notes": "hi"}))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/upper" % contract.COW_MOUNT in root_data(r)    # no "/ union": the root stays in RAM
    binds = [e for e in r.mount_log if e[0] == "bind"]
    assert binds and binds[0][1].endswith("/persist/homes") and binds[0][2].endswith("/home")
    union = [e for e in r.mount_log if e[0] == "mount" and e[2].endswith("/var/cache")]
    assert union and "upperdir=%s/var/cache/rw,workdir=%s/var/cache/work" % (P, P) in union[0][5]
    assert r.read("/home/me/notes") == b"hi"


def test_bad_persistence_conf_is_not_used(fake_machine):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={"persistence.conf": "/home link\n"}))
    r = m.boot()
    assert r.handed_off, r.console
    assert "NOT USED" in r.console and "link is not supported" in r.console and r.mount_at(P) is None


def test_image_file_on_the_fat_medium(fake_machine):
    m = fake_machine(cmdline=LIVE + "persistence persistence-path=/keep")
    image = persist_fs(m, label="whatever", files={"persistence.conf": "/ union", "rw/etc/saved": "yes"})
    m.add_disk("sda", medium_fs(m, {"keep/persistence": image}), removable=True)
    r = m.boot()
    assert r.handed_off, r.console
    src = r.mount_at(P)[0]
    assert src.startswith("/dev/loop") and r.mount_at(P)[2] == "ext4"
    remounts = [e for e in r.mount_log if e[0] == "remount" and e[1].endswith(contract.MEDIUM_MOUNT)]
    assert remounts and not remounts[0][2] & persist.sc.MS_RDONLY   # the FAT medium is made writable
    assert r.read("/etc/saved") == b"yes"


def test_image_file_holding_fat_is_refused(fake_machine):
    m = fake_machine(cmdline=LIVE + "persistence")
    image = m.filesystem("vfat", label="P", files={"persistence.conf": "/ union"})
    m.add_disk("sda", medium_fs(m, {"persistence": image}), removable=True)
    r = m.boot()
    assert r.handed_off, r.console
    assert "NOT USED" in r.console and "not an ext2/ext3/ext4" in r.console
    assert not any(e for e in r.mounts if e[1] == P)
    medium = r.mount_at(contract.MEDIUM_MOUNT)
    assert medium[3] & persist.sc.MS_RDONLY                       # put back read-only


def test_directory_storage_on_another_ext4_disk(fake_machine):
    m = fake_machine(cmdline=LIVE + "persistence persistence-storage=directory persistence-path=/data")
    m.add_disk("sda", medium_fs(m), removable=True)
    m.add_disk("sdb", persist_fs(m, label="disk", files={"data/persistence/persistence.conf": "/ union"}))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/data/persistence/rw" % contract.PERSIST_HOST in root_data(r)
    assert r.mount_at(contract.PERSIST_HOST)[0] == "/dev/sdb"


def test_directory_on_fat_is_refused_with_the_image_file_hint(fake_machine):
    m = fake_machine(cmdline=LIVE + "persistence persistence-storage=directory")
    m.add_disk("sda", medium_fs(m, {"persistence/persistence.conf": "/ union"}), removable=True)
    r = m.boot()
    assert r.handed_off, r.console
    assert "cannot hold an overlay upper layer" in r.console and "image file" in r.console


# ---- casper, archiso, dracut, ours ------------------------------------------------------------------------------

def test_casper_writable_partition(fake_machine):
    m = stick(fake_machine, LIVE + "boot=casper persistent", lambda m: persist_fs(m, label="writable"))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/upper,workdir=%s/work" % (P, P) in root_data(r)


def test_casper_rw_file_on_the_fat_medium(fake_machine):
    m = fake_machine(cmdline=LIVE + "boot=casper persistent")
    image = persist_fs(m, label="casper-rw", files={"upper/etc/saved": "c"})
    m.add_disk("sda", medium_fs(m, {"casper-rw": image}), removable=True)
    r = m.boot()
    assert r.handed_off, r.console
    assert r.mount_at(P)[0].startswith("/dev/loop") and r.read("/etc/saved") == b"c"


def test_casper_writable_vfat_partition_is_refused(fake_machine):
    m = stick(fake_machine, LIVE + "persistent", lambda m: m.filesystem("vfat", label="writable"))
    r = m.boot()
    assert r.handed_off, r.console
    assert "/dev/sda2 is vfat, which cannot hold an overlay upper layer" in r.console
    assert "persistence image file" in r.console


def test_archiso_cow_label_default_directory(fake_machine):
    m = stick(fake_machine, "archisolabel=MPLIVE archisobasedir=live rootdelay=1 cow_label=cow",
              lambda m: persist_fs(m, label="cow"))
    r = m.boot()
    assert r.handed_off, r.console
    d = "%s/persistent_MPLIVE/x86_64" % P
    assert "upperdir=%s/upperdir,workdir=%s/workdir" % (d, d) in root_data(r)


def test_archiso_cow_device_directory_and_flags(fake_machine):
    m = stick(fake_machine, LIVE + "cow_device=PARTUUID=6d70696e-0000-4000-8000-000000000002 cow_directory=/mine "
              "cow_flags=noatime", lambda m: persist_fs(m, label="any"))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/mine/upperdir" % P in root_data(r)
    assert r.mount_at(P)[3] & persist.sc.MS_NOATIME


def test_archiso_cow_spacesize_still_sizes_the_tmpfs_without_persistence(fake_machine):
    m = stick(fake_machine, LIVE + "cow_spacesize=64M")
    r = m.boot()
    assert r.handed_off and r.mount_at(contract.COW_MOUNT)[4].startswith("size=64m"), r.console


@pytest.mark.parametrize("param", ["rd.overlay", "rd.live.overlay"])
def test_dracut_overlay_with_path(fake_machine, param):
    m = stick(fake_machine, LIVE + "%s=LABEL=keep:/LiveOS/overlay" % param, lambda m: persist_fs(m, label="keep"))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/LiveOS/overlay,workdir=%s/LiveOS/ovlwork" % (P, P) in root_data(r)


def test_dracut_overlay_default_path_names_the_medium(fake_machine):
    m = stick(fake_machine, LIVE + "rd.overlay=LABEL=keep", lambda m: persist_fs(m, label="keep"))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/live/overlay-MPLIVE-4D50-4C56," % P in root_data(r)


def test_dracut_overlay_directory_on_an_ext4_medium(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=MED rootdelay=1 rd.overlay=LABEL=MED:/LiveOS/overlay")
    m.add_disk("sda", medium_fs(m, fstype="ext4", label="MED"))
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/LiveOS/overlay" % contract.MEDIUM_MOUNT in root_data(r)
    assert not r.mount_at(contract.MEDIUM_MOUNT)[3] & persist.sc.MS_RDONLY


def test_our_own_spelling_needs_no_persistence_conf(fake_machine):
    m = stick(fake_machine, LIVE + "mpinit.persist=PARTLABEL=keep", lambda m: persist_fs(m, label="x"))
    r = m.boot()
    assert r.handed_off and "upperdir=%s/rw,workdir=%s/work" % (P, P) in root_data(r), r.console


def test_our_own_spelling_file_on_the_medium(fake_machine):
    m = fake_machine(cmdline=LIVE + "mpinit.persist=/persist.img")
    m.add_disk("sda", medium_fs(m, {"persist.img": persist_fs(m, label="p")}), removable=True)
    r = m.boot()
    assert r.handed_off and r.mount_at(P)[0].startswith("/dev/loop"), r.console


# ---- readonly, reset --------------------------------------------------------------------------------------------

def test_readonly_makes_the_layer_a_lower_layer_under_tmpfs(fake_machine):
    m = stick(fake_machine, LIVE + "rd.overlay=LABEL=keep:/ov rd.overlay.readonly",
              lambda m: persist_fs(m, label="keep", files={"ov/etc/saved": "old"}))
    r = m.boot()
    assert r.handed_off, r.console
    data = root_data(r)
    assert "lowerdir=%s/ov:%s,upperdir=%s/upper" % (P, contract.IMAGE_MOUNT, contract.COW_MOUNT) in data
    assert r.mount_at(P)[3] & persist.sc.MS_RDONLY
    assert r.read("/etc/saved") == b"old"


def test_reset_empties_the_layer_before_use(fake_machine):
    m = stick(fake_machine, LIVE + "persistence rd.live.overlay.reset", lambda m: persist_fs(m, files={
        "persistence.conf": "/ union", "rw/etc/saved": "old", "rw/deep/a/b": "x", "work/w": "y"}))
    r = m.boot()
    assert r.handed_off, r.console
    assert not r.exists("/etc/saved") and not r.exists("/deep")
    assert r.listdir(P + "/rw") == [] and r.exists(P + "/persistence.conf")
    assert "reset" in persisted(r)


# ---- safety -----------------------------------------------------------------------------------------------------

def test_fsck_runs_before_mounting_and_corrected_errors_are_fine(fake_machine):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={"persistence.conf": "/ union"}))
    m.add_program("/sbin/e2fsck", exit_code=1)
    r = m.boot()
    assert r.handed_off, r.console
    assert ["/sbin/e2fsck", "-p", "/dev/sda2"] in r.spawned
    i = [c[0] for c in r.calls].index("spawn")
    mounts = [k for k, c in enumerate(r.calls) if c[0] == "mount" and c[1][1] == P]
    assert mounts and mounts[0] > i
    assert "upperdir=%s/rw" % P in root_data(r)


@pytest.mark.parametrize("code", [4, 8, 12])
def test_fsck_errors_left_mean_no_persistence_and_a_loud_warning(fake_machine, code):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={"persistence.conf": "/ union"}))
    m.add_program("/sbin/e2fsck", exit_code=code)
    r = m.boot()
    assert r.handed_off, r.console
    assert "upperdir=%s/upper" % contract.COW_MOUNT in root_data(r)
    assert r.mount_at(P) is None
    assert "NOT USED" in r.console and "errors left uncorrected" in r.console
    assert "LOST at power-off" in r.console


def test_fsck_of_an_image_file_runs_on_its_loop_device(fake_machine):
    m = fake_machine(cmdline=LIVE + "persistence")
    m.add_disk("sda", medium_fs(m, {"persistence": persist_fs(m, files={"persistence.conf": "/ union"})}),
               removable=True)
    m.add_program("/sbin/e2fsck", exit_code=4)
    r = m.boot()
    assert r.handed_off, r.console
    assert [a for a in r.spawned if a[0] == "/sbin/e2fsck"][0][2].startswith("/dev/loop")
    assert "NOT USED" in r.console
    assert all(e[1] != P for e in r.mounts)
    assert r.mount_at(contract.MEDIUM_MOUNT)[3] & persist.sc.MS_RDONLY   # the medium is read-only again


def test_rd_break_reaches_the_repl_before_the_stage(fake_machine):
    m = stick(fake_machine, LIVE + "persistence rd.break=persistence")
    m.console_input = ["print('in the shell')"]
    r = m.boot()
    assert r.rescue and r.stuck and "in the shell" in r.console


def test_a_full_volume_is_not_used(fake_machine, monkeypatch):
    # The fake's block filesystems report their image size as free space: a minimum above the volume's 8 MiB
    # makes it "full".
    monkeypatch.setattr(persist, "_MIN_FREE", 9 * MiB)
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={"persistence.conf": "/ union"}))
    r = m.boot()
    assert r.handed_off, r.console
    assert "NOT USED" in r.console and "is full" in r.console and r.mount_at(P) is None


def test_a_read_only_stick_is_not_used(fake_machine):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={"persistence.conf": "/ union"}),
              ro=True)
    r = m.boot()
    assert r.handed_off, r.console
    assert "NOT USED" in r.console and "read-only" in r.console


def test_a_mount_error_is_not_used_and_leaves_nothing_mounted(fake_machine):
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={"persistence.conf": "/ union"}))
    m.fail("mount", errno.EIO, when=lambda source, target, *rest: target == P)
    r = m.boot()
    assert r.handed_off, r.console
    assert "NOT USED" in r.console and "mount -t ext4 /dev/sda2" in r.console and r.mount_at(P) is None


def test_not_a_live_boot_or_not_asked(fake_machine):
    m = stick(fake_machine, LIVE)
    r = m.boot()
    assert r.handed_off and r.mount_at(P) is None
    assert any("persistence: skipped: not requested" in x for x in r.kmsg), r.kmsg


def test_a_plain_root_boot_ignores_persistence_words(fake_machine):
    m = fake_machine(cmdline="root=LABEL=ROOT persistence rootdelay=1")
    m.add_disk("sda", m.filesystem("ext4", label="ROOT", files={"sbin/init": m.executable(b"#!/bin/sh\n")}))
    r = m.boot()
    assert r.handed_off and any("persistence: skipped: not a live boot" in x for x in r.kmsg), r.console


def test_an_unforeseen_error_mid_way_is_undone_and_reported(fake_machine, monkeypatch):
    def broken_layout(ctx, base):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(persist, "layout", broken_layout)   # after the volume is mounted
    m = stick(fake_machine, LIVE + "persistence", lambda m: persist_fs(m, files={"persistence.conf": "/ union"}))
    r = m.boot()
    assert r.handed_off, r.console
    assert "NOT USED" in r.console and r.mount_at(P) is None
    assert ("umount", P, 0) in r.mount_log


def test_wipe_does_not_follow_symlinks_or_cross_mounts(fake_machine):
    m = stick(fake_machine, LIVE + "persistence rd.overlay.reset", lambda m: persist_fs(m, files={
        "persistence.conf": "/ union", "rw/link": m.symlink("/run/mpinit/persist/persistence.conf"),
        "rw/dir/f": "x"}))
    r = m.boot()
    assert r.handed_off, r.console
    assert r.exists(P + "/persistence.conf") and r.listdir(P + "/rw") == []
