"""mpinit_agent.luks on the fake machine: every parameter form (rd.luks.uuid/name/key/options/timeout, rd.luks=0,
cryptdevice=/cryptkey=, /etc/crypttab), the passphrase prompt (no echo, three tries, the rescue REPL's unlock()),
key files in the initramfs and on a USB key, and the failures (no cryptsetup, no dm_crypt, wrong keys).

The fake cryptsetup (mpinit.testing.dm) opens a container only with its passphrase or key bytes on stdin, with
DM_DISABLE_UDEV=1 in the environment and dm_mod + dm_crypt loaded, as the real one needs in an initramfs."""

import errno

from mpinit.testing import dm
from mpinit_agent import cmdline, luks
from mpinit_agent import linux_abi as abi

U = "6d70696e-6974-4c55-4b53-000000000002"       # the LUKS container
ROOT = "6d70696e-6974-524f-4f54-000000000102"    # the ext4 inside
PASS = "correct horse battery"                    # spaces: the prompt takes the whole line
KEY = bytes(range(256)) * 2                       # a key file: any byte, newlines included


def machine(fake_machine, cmdline_text, passphrase=PASS, keyfile=None, version=2, uuid=U, tools=True,
            crypt_modules=True, wait=3):
    m = fake_machine(cmdline="%s rootdelay=%d" % (cmdline_text, wait))
    if crypt_modules:
        m.add_module("dm_mod")
        m.add_module("dm_crypt", depends=("dm_mod",))
        m.add_module("af_alg")
        m.add_module("algif_skcipher", depends=("af_alg",))
    root = m.filesystem("ext4", uuid=ROOT, files={"sbin/init": m.executable(b"#!/bin/sh\n"),
                                                  "etc/hostname": b"crypted\n"})
    m.add_disk("vda", dm.luks(m, root, passphrase=passphrase, keyfile=keyfile, uuid=uuid, version=version))
    if tools:
        dm.install_tools(m, mdadm=False, lvm=False)
    return m


def booted(r):
    assert r.handed_off, r.console
    assert r.read("/etc/hostname") == b"crypted\n"
    return r


def cryptsetup_runs(r):
    return [a for a in r.spawned if a[0].endswith("cryptsetup")]


# ---- the passphrase prompt ----------------------------------------------------------------------------------


def test_typed_passphrase_after_a_wrong_one(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.uuid=luks-%s" % (ROOT, U[:8]))
    m.console_input = ["wrong one", PASS]
    r = booted(m.boot())
    assert r.console.count("Enter passphrase for /dev/vda (luks-%s): " % U) == 2
    assert "No key available with this passphrase (1 of 3)." in r.console
    # The secret went through stdin only, exactly as typed (no newline: --key-file=- takes every byte), and was
    # never echoed, logged or put on argv.
    assert r.stdin_fed == [b"wrong one", PASS.encode()]
    assert PASS not in r.console and PASS not in "".join(r.kmsg)
    for argv in cryptsetup_runs(r):
        assert argv[1:4] == ["open", "--type", "luks"] and "--key-file=-" in argv
        assert PASS not in " ".join(argv)
    assert r.mount_at("/")[0] == "/dev/mapper/luks-%s" % U   # the mapping's name in /proc/mounts, not dm-0


def test_echo_is_off_while_typing_and_restored_after(fake_machine):
    m = machine(fake_machine, "root=UUID=%s" % ROOT)
    m.console_input = [PASS]
    r = booted(m.boot())
    sets = [args for name, args in r.calls if name == "ioctl" and args[1] == abi.TCSETS]
    lflags = [int.from_bytes(bytes(a[2][12:16]), "little") for a in sets]
    assert len(lflags) == 2 and not lflags[0] & abi.ECHO and lflags[0] & abi.ICANON and lflags[1] & abi.ECHO


def test_echo_restored_when_the_console_read_fails(fake_machine):
    m = machine(fake_machine, "root=UUID=%s" % ROOT)
    m.fail("read", errno.EIO, when=lambda fd, n: fd == 0, times=1)
    m.console_input = [PASS]
    r = m.boot()
    sets = [args for name, args in r.calls if name == "ioctl" and args[1] == abi.TCSETS]
    assert int.from_bytes(bytes(sets[1][2][12:16]), "little") & abi.ECHO
    assert r.rescue  # the failed read is a stage failure: the REPL (console input then runs out)


def test_three_wrong_passphrases_then_rescue_and_unlock_there(fake_machine):
    m = machine(fake_machine, "root=/dev/mapper/cryptroot rd.luks.name=%s=cryptroot" % U)
    m.console_input = ["a", "b", "c", "unlock('UUID=%s', 'cryptroot')" % U, PASS, "resume()"]
    r = booted(m.boot())
    assert "boot failed in stage 'devices': could not unlock /dev/vda as cryptroot" in r.console
    assert "passphrase 3 of 3: cryptsetup exit 2" in r.console
    assert "unlock: /dev/vda is /dev/mapper/cryptroot" in r.console
    # root=/dev/mapper/cryptroot was found: the link to ../dm-0 that devmapper.sync_nodes() made.
    assert r.mount_at("/")[0] == "/dev/mapper/cryptroot"


def test_end_of_console_input_is_a_failure_not_a_hang(fake_machine):
    m = machine(fake_machine, "root=UUID=%s" % ROOT)
    m.console_input = [m.EOF]
    r = m.boot()
    assert not r.handed_off and "passphrase prompt: end of console input" in r.console


def test_repl_unlock_refuses_what_is_not_luks(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks=0" % ROOT, wait=1)
    m.add_disk("vdb", m.filesystem("vfat", label="PLAIN"))
    m.console_input = ["unlock('LABEL=PLAIN')", "unlock('/dev/nothere')"]
    r = m.boot()
    assert "unlock: /dev/vdb is not a LUKS device (vfat)" in r.console
    assert "unlock: /dev/nothere: no such device" in r.console


# ---- names and which devices ----------------------------------------------------------------------------------


def test_rd_luks_name_gives_the_mapper_name(fake_machine):
    m = machine(fake_machine, "root=/dev/mapper/cryptroot rd.luks.name=%s=cryptroot" % U)
    m.console_input = [PASS]
    r = booted(m.boot())
    assert "/dev/vda unlocked as cryptroot" in "".join(r.kmsg)
    assert dm.luks_opened(m) == {"cryptroot": []}


def test_default_unlocks_every_luks_device_on_a_plain_root_boot(fake_machine):
    m = machine(fake_machine, "root=UUID=%s" % ROOT)
    m.console_input = [PASS]
    booted(m.boot())
    assert list(dm.luks_opened(m)) == ["luks-" + U]


def test_rd_luks_uuid_for_another_device_leaves_this_one_locked(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.uuid=00000000" % ROOT, wait=1)
    r = m.boot()
    assert not r.handed_off and not cryptsetup_runs(r)
    assert "LUKS device not unlocked (not found): rd.luks.uuid=00000000" in r.console


def test_rd_luks_0_unlocks_nothing(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks=0" % ROOT, wait=1)
    r = m.boot()
    assert not r.handed_off and not cryptsetup_runs(r)
    assert "root device UUID=%s did not appear" % ROOT in r.console


def test_a_live_boot_does_not_ask_for_an_unrelated_luks_disk(fake_machine):
    m = machine(fake_machine, "root=live:LABEL=NOPE", wait=1)
    r = m.boot()
    assert not cryptsetup_runs(r) and "Enter passphrase" not in r.console


def test_luks1(fake_machine):
    m = machine(fake_machine, "root=UUID=%s" % ROOT, version=1)
    m.console_input = [PASS]
    booted(m.boot())


# ---- options ----------------------------------------------------------------------------------------------------


def test_rd_luks_options_discard(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.options=discard" % ROOT)
    m.console_input = [PASS]
    r = booted(m.boot())
    assert "--allow-discards" in cryptsetup_runs(r)[0]
    assert dm.luks_opened(m) == {"luks-" + U: ["allow-discards"]}


# ---- key files ----------------------------------------------------------------------------------------------------


def test_key_file_in_the_initramfs(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.key=/etc/keys/root.key" % ROOT, keyfile=KEY)
    m.add_file("/etc/keys/root.key", KEY)
    r = booted(m.boot())
    assert r.stdin_fed == [KEY] and "Enter passphrase" not in r.console


def test_key_file_on_a_usb_key_is_read_and_the_key_unmounted(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.key=/keys/root.key:LABEL=MPKEYS:UUID=%s" % (ROOT, U),
                keyfile=KEY)
    m.add_disk("sdb", m.filesystem("vfat", label="MPKEYS", files={"keys/root.key": KEY}), removable=True,
               appear_after_ms=1500)
    r = booted(m.boot())
    assert r.stdin_fed == [KEY]
    assert any(e[0] == "mount" and e[1][1] == luks.KEY_MOUNT for e in r.calls)
    assert not [mt for mt in r.mounts if mt[1].endswith("keydev")]


def test_key_stick_mounted_like_any_medium_with_the_vfat_charset_retry(fake_machine):
    # A FAT key stick whose default iocharset is missing from the image: mount(2) says EINVAL once, and the key
    # mount tries iocharset=utf8 as the medium's mount does (one mount helper, medium.mount_dev).
    m = machine(fake_machine, "root=UUID=%s rd.luks.key=/keys/root.key:LABEL=MPKEYS" % ROOT, keyfile=KEY)
    m.add_disk("sdb", m.filesystem("vfat", label="MPKEYS", files={"keys/root.key": KEY}), removable=True)
    m.fail("mount", errno.EINVAL, when=lambda src, target, fstype, flags, data: target == luks.KEY_MOUNT
           and data is None, times=1)
    r = booted(m.boot())
    assert r.stdin_fed == [KEY]
    keymounts = [e for e in r.mount_log if e[0] == "mount" and e[2] == luks.KEY_MOUNT]
    assert [(e[3], e[5]) for e in keymounts] == [("vfat", "iocharset=utf8")]
    assert keymounts[0][4] & abi.MS_RDONLY and keymounts[0][4] & abi.MS_NOEXEC


def test_key_on_an_ntfs_stick_is_mounted_with_the_ntfs3_driver(fs):
    from agent_stub import StubSys
    from mpinit_agent import main

    class Dev:   # a probed blockdev.Device
        name = "sdb1"
        path = "/dev/sdb1"
        info = _info = {"TYPE": "ntfs", "LABEL": "KEYS"}

    class NoModules:
        def available(self):
            return []

        def match(self, alias):
            return []

    fs.create_file(luks.KEY_MOUNT + "/k", contents=b"SECRET")
    ctx = main.Context()
    ctx.modules = NoModules()
    with StubSys(fs) as s:
        key, why = luks.read_key(ctx, ("/k", "LABEL=KEYS", 0, 0), devices=[Dev()])
    assert (bytes(key), why) == (b"SECRET", None)
    flags = abi.MS_RDONLY | abi.MS_NOSUID | abi.MS_NODEV | abi.MS_NOEXEC
    assert [a for n, a in s.calls if n == "mount"] == [("/dev/sdb1", luks.KEY_MOUNT, "ntfs3", flags, None)]
    assert not s.mounts  # unmounted after the read


def test_missing_key_device_falls_back_to_the_prompt_after_rd_luks_timeout(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.key=/k:LABEL=MPKEYS rd.luks.timeout=2" % ROOT, wait=10)
    m.console_input = [PASS]
    r = booted(m.boot())
    assert "key device LABEL=MPKEYS not found" in "".join(r.kmsg)
    assert r.uptime_ms >= 2000


def test_rd_luks_timeout_bounds_the_prompt_then_the_rescue_report(fake_machine):
    """Nobody types: after rd.luks.timeout= the prompt gives up and the failure report says why (dracut: the
    password prompt's timeout), instead of waiting forever."""
    m = machine(fake_machine, "root=UUID=%s rd.luks.timeout=5" % ROOT, wait=30)
    m.console_input = [m.SILENCE]
    r = m.boot()
    assert not r.handed_off
    assert "Timed out waiting for the passphrase of /dev/vda." in r.console
    assert "boot failed in stage 'devices'" in r.console
    assert "nothing typed within rd.luks.timeout=5 s" in r.console
    assert 5000 <= r.uptime_ms < 30000 and r.stdin_fed == []


def test_rd_luks_timeout_leaves_time_to_type(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.timeout=5" % ROOT)
    m.console_input = ["wrong", PASS]
    r = booted(m.boot())
    assert r.stdin_fed == [b"wrong", PASS.encode()]


def test_without_rd_luks_timeout_the_prompt_waits(fake_machine):
    """No timeout (dracut's default, "0 means forever"): the console is read without a poll that could expire."""
    m = machine(fake_machine, "root=UUID=%s rd.luks.timeout=0" % ROOT)
    m.console_input = [m.SILENCE]   # read() takes this as a typed line: no poll() consumed it as a timeout
    r = m.boot()
    assert r.stdin_fed == [m.SILENCE.encode()]
    assert "Timed out" not in r.console


def test_a_wrong_key_file_falls_back_to_the_prompt(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.key=/k" % ROOT, keyfile=KEY)
    m.add_file("/k", b"not the key")
    m.console_input = [PASS]
    r = booted(m.boot())
    assert r.stdin_fed == [b"not the key", PASS.encode()]


def test_key_for_another_luks_device_is_not_tried(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.key=/k::UUID=ffff" % ROOT, keyfile=KEY)
    m.add_file("/k", KEY)
    m.console_input = [PASS]
    r = booted(m.boot())
    assert r.stdin_fed == [PASS.encode()]


# ---- mkinitcpio ----------------------------------------------------------------------------------------------------


def test_cryptdevice_and_cryptkey_rootfs(fake_machine):
    m = machine(fake_machine, "root=/dev/mapper/root cryptdevice=UUID=%s:root:allow-discards cryptkey=rootfs:/k"
                % U, keyfile=KEY)
    m.add_file("/k", KEY)
    r = booted(m.boot())
    assert dm.luks_opened(m) == {"root": ["allow-discards"]}
    assert r.stdin_fed == [KEY]


def test_cryptkey_raw_bytes_on_a_device(fake_machine):
    m = machine(fake_machine, "root=/dev/mapper/root cryptdevice=/dev/vda:root cryptkey=/dev/vdb:4096:64",
                keyfile=KEY[:64])
    m.add_disk("vdb", b"\0" * 4096 + KEY[:64] + b"\0" * (65536 - 4096 - 64))
    r = booted(m.boot())
    assert r.stdin_fed == [KEY[:64]]


# ---- /etc/crypttab ------------------------------------------------------------------------------------------------


def test_crypttab_names_the_device_and_gives_key_and_options(fake_machine):
    m = machine(fake_machine, "root=/dev/mapper/cr", keyfile=KEY)
    m.add_file("/etc/crypttab", "# baked in by mpinit pack --crypttab\ncr UUID=%s /etc/cr.key luks,discard\n" % U)
    m.add_file("/etc/cr.key", KEY)
    booted(m.boot())
    assert dm.luks_opened(m) == {"cr": ["allow-discards"]}


def test_crypttab_noauto_entries_wait_for_the_repl(fake_machine):
    m = machine(fake_machine, "root=/dev/mapper/cr", wait=1)
    m.add_file("/etc/crypttab", "cr UUID=%s none noauto\n" % U)
    r = m.boot()
    assert not r.handed_off and not cryptsetup_runs(r)


def test_a_bad_crypttab_names_its_line(fake_machine):
    m = machine(fake_machine, "root=/dev/mapper/cr", wait=1)
    m.add_file("/etc/crypttab", "cr\n")
    r = m.boot()
    assert "crypttab line 1" in r.console and "parameter: /etc/crypttab" in r.console


def test_crypttab_plain_mode_is_refused_with_a_message(fake_machine):
    m = machine(fake_machine, "root=/dev/mapper/cr", wait=1)
    m.add_file("/etc/crypttab", "cr UUID=%s none plain\n" % U)
    r = m.boot()
    assert "crypttab options plain are not supported (LUKS only)" in r.console


# ---- what the image lacks -------------------------------------------------------------------------------------


def test_no_cryptsetup_in_the_image_says_how_to_pack_it(fake_machine):
    # Without cryptsetup there is no unlock-all (dracut without its crypt module): the root stays missing, and the
    # report names the LUKS device the root may be in.
    m = machine(fake_machine, "root=UUID=%s" % ROOT, tools=False, wait=1)
    r = m.boot()
    assert "root device UUID=%s did not appear" % ROOT in r.console
    assert "/dev/vda is a LUKS device but cryptsetup is not in the initramfs" in r.console
    assert "mpinit pack --luks" in r.console


def test_explicit_target_without_cryptsetup_fails_naming_it(fake_machine):
    m = machine(fake_machine, "root=UUID=%s rd.luks.uuid=%s" % (ROOT, U), tools=False, wait=1)
    r = m.boot()
    assert "boot failed in stage 'devices': /dev/vda is a LUKS device but cryptsetup is not in the initramfs" \
        in r.console


def _plain_root_beside_luks(fake_machine, tools, root_first):
    """A plain ext4 root (LABEL=PLAINROOT) and an unrelated LUKS disk, plus one more plain disk; the root on the
    first disk (vda) or after the LUKS one."""
    m = fake_machine(cmdline="root=LABEL=PLAINROOT rootdelay=1")
    m.add_module("dm_mod")
    m.add_module("dm_crypt", depends=("dm_mod",))
    root = m.filesystem("ext4", label="PLAINROOT", files={"sbin/init": m.executable(b"#!/bin/sh\n"),
                                                         "etc/hostname": b"plain\n"})
    crypt = dm.luks(m, m.filesystem("ext4"), passphrase=PASS, uuid=U)
    disks = [root, crypt] if root_first else [crypt, root]
    m.add_disk("vda", disks[0])
    m.add_disk("vdb", disks[1])
    m.add_disk("vdc", m.filesystem("vfat", label="OTHER"))
    if tools:
        dm.install_tools(m, mdadm=False, lvm=False)
    return m


def test_a_plain_root_found_leaves_other_luks_disks_alone_and_unprobed(fake_machine, monkeypatch):
    from mpinit_agent import blockdev, probe

    m = _plain_root_beside_luks(fake_machine, tools=True, root_first=True)
    seen = []
    real = probe.probe
    monkeypatch.setattr(probe, "probe", lambda path, *a, **k: seen.append(path) or real(path, *a, **k))
    blockdev.forget()
    r = m.boot()
    assert r.handed_off and r.read("/etc/hostname") == b"plain\n", r.console
    assert not cryptsetup_runs(r) and "Enter passphrase" not in r.console
    # dracut's unlock-all was not needed: nothing after the root in scan order was read.
    assert "/dev/vdb" not in seen and "/dev/vdc" not in seen


def test_without_cryptsetup_an_unrelated_luks_disk_does_not_fail_the_boot(fake_machine):
    m = _plain_root_beside_luks(fake_machine, tools=False, root_first=False)
    r = m.boot()
    assert r.handed_off and r.read("/etc/hostname") == b"plain\n", r.console
    assert "cryptsetup" not in r.console


def test_with_cryptsetup_an_unrelated_luks_disk_before_the_root_is_not_asked_for(fake_machine):
    m = _plain_root_beside_luks(fake_machine, tools=True, root_first=False)
    r = m.boot()
    assert r.handed_off and r.read("/etc/hostname") == b"plain\n", r.console
    assert not cryptsetup_runs(r) and "Enter passphrase" not in r.console


def test_without_dm_crypt_cryptsetup_fails_once_not_three_times(fake_machine):
    m = machine(fake_machine, "root=UUID=%s" % ROOT, crypt_modules=False, wait=1)
    m.console_input = [PASS]
    r = m.boot()
    assert len(cryptsetup_runs(r)) == 1 and "passphrase 1 of 3: cryptsetup exit 1" in r.console


# ---- planning (pure) -------------------------------------------------------------------------------------------


def test_targets_from_parameters():
    o = cmdline.parse("rd.luks.uuid=luks-ABCD rd.luks.name=1234=home rd.luks.options=discard "
                      "rd.luks.key=/k:LABEL=USB")
    ts = luks.targets(o, [])
    assert [(t.name, t.uuid, t.options) for t in ts] == [(None, "abcd", ["discard"]), ("home", "1234", ["discard"])]
    assert ts[0].keys == [("/k", "LABEL=USB", 0, 0, None)]


def test_targets_default_and_off():
    assert [(t.uuid, t.nofail, t.fallback) for t in luks.targets(cmdline.parse("root=/dev/x"), [])] == [
        ("", True, True)]
    assert luks.targets(cmdline.parse("root=/dev/x"), [], unlock_all=False) == []  # no cryptsetup packed
    assert luks.targets(cmdline.parse("root=live:LABEL=x"), []) == []
    assert luks.targets(cmdline.parse("root=/dev/x rd.luks=0"), []) == []


def test_cryptsetup_argv_options():
    assert luks.cryptsetup_argv("/sbin/cryptsetup", "/dev/vda2", "r", ["discard", "readonly", "luks"]) == [
        "/sbin/cryptsetup", "open", "--type", "luks", "/dev/vda2", "r", "--key-file=-", "--allow-discards",
        "--readonly"]


# ---- open_device() for other stages (live-boot's persistence-encryption=luks) ----------------------------------


def test_open_device_for_another_stage(fake_machine):
    # A live boot (nothing unlocked by the devices stage) whose later stage opens an encrypted volume itself.
    m = fake_machine(cmdline="root=live:LABEL=NOPE rootdelay=1")
    m.add_module("dm_mod")
    m.add_module("dm_crypt", depends=("dm_mod",))
    m.add_disk("vdb", dm.luks(m, m.filesystem("ext4", label="persistence"), passphrase=PASS, uuid=U))
    dm.install_tools(m, mdadm=False, lvm=False)
    m.add_hook("10-persist.py", "def before_medium(ctx):\n"
                                "    from mpinit_agent import luks\n"
                                "    print('opened at', luks.open_device(ctx, '/dev/vdb', 'persist', 'medium'))\n")
    m.console_input = [PASS]
    r = m.boot()
    assert "opened at /dev/mapper/persist" in r.console
    assert dm.luks_opened(m) == {"persist": []} and r.stdin_fed == [PASS.encode()]


def test_open_device_failure_is_a_boot_error_of_the_callers_stage(fake_machine):
    m = fake_machine(cmdline="root=live:LABEL=NOPE rootdelay=1")
    m.add_module("dm_mod")
    m.add_module("dm_crypt", depends=("dm_mod",))
    m.add_disk("vdb", dm.luks(m, m.filesystem("ext4"), passphrase=PASS, uuid=U))
    dm.install_tools(m, mdadm=False, lvm=False)
    m.add_hook("10-persist.py", "def before_medium(ctx):\n"
                                "    from mpinit_agent import luks\n"
                                "    luks.open_device(ctx, '/dev/vdb', 'persist', 'medium', tries=1)\n")
    m.console_input = ["nope"]
    r = m.boot()
    # (called from a hook here, so the report also names the hook; a stage calling it directly reports it as is)
    assert "boot failed in stage 'medium'" in r.console and "could not unlock /dev/vdb as persist" in r.console


def test_crypttab_key_offset_size_and_bare_numeric_options():
    from mpinit_agent import crypttab

    e = crypttab.parse("a UUID=ab /k keyfile-offset=16,keyfile-size=32,tries=5\n"
                       "b UUID=cd /k keyfile-offset,tries\n")
    o = cmdline.parse("root=/dev/x")
    ta, tb = luks.targets(o, e)
    assert ta.keys == [("/k", None, 16, 32)] and ta.tries == 5 and ta.name == "a"
    assert tb.keys == [("/k", None, 0, 0)] and tb.tries == 3
