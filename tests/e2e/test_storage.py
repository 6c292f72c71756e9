"""End-to-end boots of installed systems' storage stacks: the real Debian kernel, an image packed by `mpinit pack`
with the real cryptsetup, mdadm, lvm and e2fsck, and disks made by those same tools in a QEMU guest
(mpinit.testing.storage_media). Two ways to pack: the switches (`--luks --mdadm --lvm`, the default image here)
and by hand (`--binary` each tool, the dm/md/crypto modules by name: what the issue's reporter tried), both with
e2fsck added as /sbin/fsck.ext4.

Parameters are written as dracut and mkinitcpio users write them. Each boot asserts on the test root's marker
(MPINIT-LIVE-OK, /proc/mounts) and on the agent's own `mpinit:` lines; consoles are kept in
build/e2e/logs/<test>.log. The media are cached under build/e2e/storage/ (40-80 s under TCG to make them all).
"""

import os
import shutil
import subprocess
import sys

import pytest

from e2e_support import qemu_kernel  # noqa: F401 (fixture)
from mpinit import media, qemu
from mpinit.paths import build_dir
from mpinit.testing import storage_media as sm

REPL_PROMPT = ">>> "
NO_SHELL = "rd.shell=0 panic=1"        # a failure reboots at once; -no-reboot turns that into QEMU's exit
MEMORY_MB = 256
PROMPT = "Enter passphrase for"        # the agent's prompt (luks.py); the wait is for this text
OTHER_KVER = "9.9.9-mpinit-other"      # the release of the mismatched image's modules

# What a user adds to the image for these machines (the agent loads the shipped ones when it needs them):
# dm-crypt and the crypto cryptsetup uses (aes-xts, the AF_ALG sockets for the keyslots), md RAID1, LVM's dm.
STORAGE_MODULES = ("dm_mod,dm_crypt,af_alg,algif_skcipher,algif_hash,xts,ecb,cbc,essiv,aesni_intel,"
                   "sha256_ssse3,crc32c_intel,md_mod,raid1,dm_snapshot,dm_mirror,dm_zero")
TOOLS = ("/sbin/cryptsetup", "/sbin/mdadm", "/sbin/lvm")


def _pack(out, runtime_binary, module_dir, *extra):
    env = dict(os.environ, MPINIT_RUNTIME=str(runtime_binary))
    argv = [sys.executable, "-m", "mpinit", "pack", "-o", str(out), "--init", str(runtime_binary),
            "--kernel-modules", str(module_dir)] + list(extra)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, "mpinit pack failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
    return out


def _runtime_with_agent(runtime_binary, work):
    # The runtime is a plain MicroPython under any name not ending in "init": check that the agent is frozen in.
    probe = work / "micropython"
    probe.symlink_to(runtime_binary.resolve())
    check = subprocess.run([str(probe), "-c", "import mpinit_agent.main"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip("agent not built into %s: %s" % (runtime_binary, (check.stdout + check.stderr).strip()[-300:]))


FSCK = ("--add", "/sbin/e2fsck:/sbin/fsck.ext4")


@pytest.fixture(scope="session")
def storage_initrd(qemu_kernel, runtime_binary, tmp_path_factory):
    """The image for installed systems packed with the switches: --luks --mdadm --lvm (each tool with its
    libraries and modules), e2fsck as /sbin/fsck.ext4."""
    from e2e_support import require_tools

    require_tools("cryptsetup", "mdadm", "lvm", "e2fsck", "debugfs", "sgdisk")
    work = tmp_path_factory.mktemp("storage-initrd")
    _runtime_with_agent(runtime_binary, work)
    return _pack(work / "initrd.img", runtime_binary, qemu_kernel.modules_dir, "--luks", "--mdadm", "--lvm", *FSCK)


@pytest.fixture(scope="session")
def by_hand_initrd(qemu_kernel, runtime_binary, storage_initrd, tmp_path_factory):
    """The same machine support packed by hand: generic-live + the storage modules by name, --binary each tool."""
    work = tmp_path_factory.mktemp("by-hand-initrd")
    _runtime_with_agent(runtime_binary, work)
    extra = ["--modules", "generic-live," + STORAGE_MODULES]
    for t in TOOLS:
        extra += ["--binary", t]
    return _pack(work / "initrd.img", runtime_binary, qemu_kernel.modules_dir, *(extra + list(FSCK)))


@pytest.fixture(params=["switches", "by-hand"])
def packed(request):
    """The image of either packing (a test parametrized over both)."""
    return request.getfixturevalue("storage_initrd" if request.param == "switches" else "by_hand_initrd")


@pytest.fixture(scope="session")
def made(qemu_kernel, storage_initrd):
    """made(name) -> maker.Made for a storage_media function name, made once (cached across sessions)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = getattr(sm, name)(qemu_kernel)
        return cache[name]
    return get


@pytest.fixture
def boot(request, qemu_kernel, storage_initrd):
    """boot([disk paths], "kernel params", initrd=..., input_lines=...) -> qemu.BootResult; the log is kept."""
    logs = build_dir() / "e2e" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")

    def run_boot(disks, append, initrd=None, memory_mb=MEMORY_MB, timeout_s=120, **kw):
        # Without an input script, the rescue prompt means the boot failed: stop there, not at the deadline.
        kw.setdefault("stop_on", None if kw.get("input_lines") else REPL_PROMPT)
        return qemu.boot(qemu_kernel.vmlinuz, initrd or storage_initrd, disks=[str(d) for d in disks],
                         append=append, memory_mb=memory_mb, timeout_s=timeout_s,
                         log_path=logs / (name + ".log"), **kw)
    return run_boot


def agent_lines(r, *words):
    return [line for line in r.lines("mpinit:") if all(w.lower() in line.lower() for w in words)]


def mount_table(r):
    """{mount point: (source, fstype)}; a /dev/dm-N source is given as /dev/mapper/<its dm name> (the test root
    prints the names, storage_media.DM_REPORT), so tests can name the mapping either way the agent mounts it."""
    names = sm.dm_names(r.output)
    out = {}
    for m in r.mounts():
        source = m[0]
        if source.startswith("/dev/dm-") and source[5:] in names:
            source = "/dev/mapper/" + names[source[5:]]
        out[m[1]] = (source, m[2])
    return out


def show(r):
    """The end of the console, for assertion messages."""
    return r.output[-5000:]


def assert_root(r, source=None):
    """The boot reached the test root on ext4; returns the mount table it printed."""
    assert r.ok, show(r)
    assert r.marker_fields()["rootfs"] == "ext4", r.marker_line
    mounts = mount_table(r)
    if source:
        assert mounts["/"][0] == source, mounts
    return mounts


def assert_failed(r, stage, *words):
    """No root, the agent's failure report naming the stage and the words."""
    assert not r.ok, r.marker_line
    text = r.output.lower()
    at = text.find("boot failed")
    assert at >= 0, show(r)
    report = text[at:]
    assert "stage '%s'" % stage in report, show(r)
    for w in words:
        assert w.lower() in report, "%r not in the failure report:\n%s" % (w, r.output[at:][-4000:])


# --- the media themselves ------------------------------------------------------------------------------------

def _blkid(path, offset=1024 * 1024):
    """blkid's low-level probe of the first partition (sgdisk's 1 MiB start) of an image file: no device."""
    out = subprocess.run(["blkid", "-p", "-o", "export", "-O", str(offset), str(path)], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.e2e
def test_media_are_what_the_scenarios_name(made):
    """What blkid sees on the host, and what the tools in the guest said (facts), match the fixed identifiers."""
    luks2 = made("luks2_root")
    probe = _blkid(luks2.disks[0])
    assert (probe["TYPE"], probe["VERSION"], probe["UUID"]) == ("crypto_LUKS", "2", sm.LUKS2_UUID)
    assert luks2.facts["pbkdf"] == "argon2id" and luks2.facts["mproot2_uuid"] == sm.LUKS2_ROOT_UUID
    luks1 = made("luks1_keyfile")
    probe = _blkid(luks1.disks[0])
    assert (probe["TYPE"], probe["VERSION"], probe["UUID"]) == ("crypto_LUKS", "1", sm.LUKS1_UUID)
    keys = _blkid(luks1.disks[1])
    assert (keys["TYPE"], keys["LABEL"], keys["UUID"]) == ("ext4", sm.KEYS_LABEL, sm.KEYS_UUID)
    raid = made("raid_lvm")
    # blkid writes the md UUID as a plain UUID; mdadm (and rd.md.uuid=) in four colon-separated groups
    md_blkid = sm.MD_UUID.replace(":", "")
    md_blkid = "-".join((md_blkid[:8], md_blkid[8:12], md_blkid[12:16], md_blkid[16:20], md_blkid[20:]))
    for disk in raid.disks:
        probe = _blkid(disk)
        assert (probe["TYPE"], probe["VERSION"], probe["UUID"]) == ("linux_raid_member", "1.2", md_blkid)
    assert raid.facts["md_uuid"] == sm.MD_UUID and raid.facts["md_level"] == "raid1"
    assert raid.facts["lvs"].startswith("root:") and ",usr:" in raid.facts["lvs"]
    assert raid.facts["mplvroot_uuid"] == sm.LV_ROOT_UUID and raid.facts["mplvusr_uuid"] == sm.LV_USR_UUID


# --- LUKS ----------------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_luks2_root_typed_passphrase_wrong_then_right(boot, made, packed):
    m = made("luks2_root")
    r = boot(m.disks, "rd.luks.uuid=%s root=UUID=%s" % (sm.LUKS2_UUID, sm.LUKS2_ROOT_UUID), initrd=packed,
             input_lines=[(PROMPT, sm.WRONG_PASSPHRASE), (PROMPT, sm.LUKS2_PASSPHRASE)])
    assert len(r.sent) == 2, "the prompt did not come twice (sent %d lines):\n%s" % (len(r.sent), show(r))
    assert r.output.count(PROMPT) == 2, show(r)
    assert_root(r, "/dev/mapper/luks-" + sm.LUKS2_UUID)  # dracut's default name for rd.luks.uuid=
    assert [m[0] for m in r.mounts() if m[1] == "/"] == ["/dev/mapper/luks-" + sm.LUKS2_UUID], show(r)
    assert "mdadm" not in r.output and "lvm" not in "\n".join(r.lines("mpinit:")), show(r)  # no RAID, no LVM
    # echo was off: neither passphrase came back on the console
    assert sm.LUKS2_PASSPHRASE not in r.output and sm.WRONG_PASSPHRASE not in r.output


@pytest.mark.e2e
def test_luks2_root_named_by_rd_luks_name(boot, made):
    m = made("luks2_root")
    r = boot(m.disks, "rd.luks.name=%s=cryptroot root=/dev/mapper/cryptroot" % sm.LUKS2_UUID,
             input_lines=[(PROMPT, sm.LUKS2_PASSPHRASE)])
    assert r.output.count(PROMPT) == 1, show(r)
    assert_root(r, "/dev/mapper/cryptroot")


@pytest.mark.e2e
def test_luks2_three_wrong_passphrases_then_unlock_from_the_rescue_repl(boot, made):
    """Three wrong tries end in the rescue REPL with the report; unlock() there and resume() boot the root."""
    m = made("luks2_root")
    r = boot(m.disks, "rd.luks.uuid=%s root=UUID=%s" % (sm.LUKS2_UUID, sm.LUKS2_ROOT_UUID),
             input_lines=[(PROMPT, sm.WRONG_PASSPHRASE)] * 3
             + [(REPL_PROMPT, 'unlock("/dev/vda1")'), (PROMPT, sm.LUKS2_PASSPHRASE), (REPL_PROMPT, "resume()")],
             timeout_s=150)
    text = r.output.lower()
    at = text.find("boot failed")
    assert at >= 0, show(r)
    report = r.output[at:at + 3000]
    assert "/dev/vda1" in report and "unlock" in report.lower(), report
    assert r.output.count(PROMPT) == 4, show(r)
    assert_root(r, "/dev/mapper/luks-" + sm.LUKS2_UUID)
    assert sm.LUKS2_PASSPHRASE not in r.output and sm.WRONG_PASSPHRASE not in r.output


def _fat_key_disk(path):
    """A whole-disk FAT (FAT16, label FATKEYS) holding the LUKS1 key at KEY_PATH: made with mtools on a plain
    file, no kernel device."""
    from mpinit import fat

    size = 8 << 20
    with open(path, "wb") as f:
        f.truncate(size)
    fat.mkfs(str(path), 0, size, "FATKEYS", 0, fat32=False)
    fat.mkdirs(str(path), 0, [os.path.dirname(sm.KEY_PATH)])
    key = path.parent / "root.key"
    key.write_bytes(sm.LUKS1_KEY)
    fat.copy_in(str(path), 0, key, sm.KEY_PATH)
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("style", ["dracut", "mkinitcpio", "dracut-fat-key"])
def test_luks1_root_with_key_file_on_a_second_disk(boot, made, style, tmp_path):
    m = made("luks1_keyfile")
    disks = m.disks
    if style == "dracut-fat-key":
        # the key stick on FAT: mounted as any medium is (medium.mount_dev: vfat's module and codepages loaded)
        disks = [m.disks[0], _fat_key_disk(tmp_path / "fatkeys.img")]
        append = "rd.luks.uuid=%s rd.luks.key=%s:LABEL=FATKEYS root=UUID=%s" % (
            sm.LUKS1_UUID, sm.KEY_PATH, sm.LUKS1_ROOT_UUID)
        source = "/dev/mapper/luks-" + sm.LUKS1_UUID
    elif style == "dracut":
        append = "rd.luks.uuid=%s rd.luks.key=%s:UUID=%s root=UUID=%s" % (
            sm.LUKS1_UUID, sm.KEY_PATH, sm.KEYS_UUID, sm.LUKS1_ROOT_UUID)
        source = "/dev/mapper/luks-" + sm.LUKS1_UUID
    else:
        append = "cryptdevice=UUID=%s:cryptroot cryptkey=LABEL=%s:ext4:%s root=/dev/mapper/cryptroot" % (
            sm.LUKS1_UUID, sm.KEYS_LABEL, sm.KEY_PATH)
        source = "/dev/mapper/cryptroot"
    r = boot(disks, append)
    assert PROMPT not in r.output, "asked for a passphrase although the key file is there:\n" + show(r)
    assert_root(r, source)


# --- the guide's machine: RAID1 -> LVM -> root + /usr -----------------------------------------------------------

RAID_PARAMS = "rd.md.uuid=%s rd.lvm.vg=%s rd.lvm.lv=%s/root rd.lvm.lv=%s/usr root=/dev/mapper/%s-root" % (
    sm.MD_UUID, sm.VG, sm.VG, sm.VG, sm.VG)


@pytest.mark.e2e
def test_root_on_lvm_on_raid1_with_usr_from_fstab(boot, made, packed):
    m = made("raid_lvm")
    r = boot(m.disks, RAID_PARAMS, initrd=packed)
    mounts = assert_root(r, "/dev/mapper/vg0-root")
    assert sm.USR_MARKER in r.output, "/usr not mounted when init ran:\n" + show(r)
    assert mounts.get("/usr") == ("/dev/mapper/vg0-usr", "ext4"), mounts
    assert not agent_lines(r, "warning", "degraded"), "\n".join(r.lines("mpinit:"))
    # /proc/mounts itself names the mappings (as under dracut), not /dev/dm-N
    raw = {m[1]: m[0] for m in r.mounts()}
    assert (raw["/"], raw["/usr"]) == ("/dev/mapper/vg0-root", "/dev/mapper/vg0-usr"), raw
    # each tool ran once: no second mdadm pass after lvm, no vgchange for the volumes lvm made, no fd leaked
    assert len(agent_lines(r, "running", "mdadm --assemble")) == 1, "\n".join(r.lines("mpinit:"))
    assert len(agent_lines(r, "running", "lvm")) == 1, "\n".join(r.lines("mpinit:"))
    assert "leaked on lvm" not in r.output and "No arrays found" not in r.output, show(r)


@pytest.mark.e2e
def test_raid1_with_a_member_missing_boots_degraded_with_a_warning(boot, made):
    m = made("raid_lvm")
    r = boot(m.disks[:1], RAID_PARAMS)
    mounts = assert_root(r, "/dev/mapper/vg0-root")
    assert sm.USR_MARKER in r.output, show(r)
    assert mounts.get("/usr") == ("/dev/mapper/vg0-usr", "ext4"), mounts
    assert agent_lines(r, "warning", "degraded"), "no degraded warning:\n" + "\n".join(r.lines("mpinit:"))


# --- fsck ----------------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_fsck_repairs_the_root_and_boots(boot, made):
    m = made("fsck_fixable")
    r = boot(m.disks, "root=UUID=%s" % sm.FSCK_FIXABLE_UUID)
    assert_root(r, "/dev/vda")
    assert "FIXED" in r.output, show(r)                       # e2fsck -a said what it repaired
    assert agent_lines(r, "fsck.ext4", "exit 1"), "\n".join(r.lines("mpinit:"))   # fsck(8): 1 = corrected


@pytest.mark.e2e
def test_fsck_that_cannot_repair_stops_in_the_rescue_repl(boot, made):
    """Exit 4 from `fsck -a`: the REPL with the report; the repair the report suggests (with -y, as nobody is
    there to answer e2fsck's questions) and resume() then boot the root."""
    m = made("fsck_broken")
    r = boot(m.disks, "root=UUID=%s" % sm.FSCK_BROKEN_UUID,
             input_lines=[(REPL_PROMPT, "run('/sbin/fsck.ext4', '-y', '/dev/vda')"), (REPL_PROMPT, "resume()")])
    at = r.output.lower().find("boot failed")
    assert at >= 0, show(r)
    report = r.output[at:].split(REPL_PROMPT)[0]
    assert "stage 'root'" in report and "fsck.ext4" in report and "exit code 4" in report, report
    assert "UNEXPECTED INCONSISTENCY" in r.output[:at], show(r)
    assert_root(r, "/dev/vda")


# --- kernel mismatch -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mismatched_initrd(qemu_kernel, runtime_binary, tmp_path_factory):
    """An image whose modules claim another release: the kernel's own tree hard-linked under OTHER_KVER."""
    work = tmp_path_factory.mktemp("mismatch")
    _runtime_with_agent(runtime_binary, work)
    tree = work / "lib" / "modules" / OTHER_KVER
    shutil.copytree(qemu_kernel.modules_dir, tree, copy_function=os.link)
    return _pack(work / "initrd.img", runtime_binary, tree, "--modules", "generic-live")


@pytest.mark.e2e
def test_kernel_mismatch_fails_the_modules_stage_naming_both_releases(boot, qemu_kernel, mismatched_initrd):
    r = boot([media.ensure("ext4-root").path], "root=UUID=%s %s" % (media.ROOT_UUID, NO_SHELL),
             initrd=mismatched_initrd, timeout_s=90)
    assert_failed(r, "modules", OTHER_KVER, qemu_kernel.kver, "mpinit pack")
    assert not r.timed_out
    assert "invalid module format" not in r.output.lower(), show(r)
