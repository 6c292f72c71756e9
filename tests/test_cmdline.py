"""mpinit_agent.cmdline: the kernel's splitting rules, every parameter family, and the errors for bad values.

Runs under CPython pytest and under the built MicroPython (tests/mpy/run.py): plain asserts, shim-only pytest."""

import pytest

from mpinit_agent import cmdline
from mpinit_agent.cmdline import CmdlineError, parse, split

MICROPYTHON = True

# A real Fedora live ISO's grub line, an Arch ISO's and a Debian live one (as their boot menus write them).
FEDORA = ("BOOT_IMAGE=/images/pxeboot/vmlinuz root=live:CDLABEL=Fedora-WS-Live-40-1-14 "
          "rd.live.image quiet rhgb")
ARCH = "BOOT_IMAGE=/arch/boot/x86_64/vmlinuz-linux archisobasedir=arch archisolabel=ARCH_202405 cow_spacesize=1G"
DEBIAN = "BOOT_IMAGE=/live/vmlinuz boot=live components quiet splash findiso=/iso/debian-live.iso"


# --- split(): lib/cmdline.c next_arg() ---

@pytest.mark.parametrize("text, words", [
    ("", []),
    ("   \t\n", []),
    ("a b\tc\nd", ["a", "b", "c", "d"]),
    ("  lead  trail  ", ["lead", "trail"]),
    ('a="b c" d', ["a=b c", "d"]),
    ('"a=b c" d', ["a=b c", "d"]),
    ('"quoted word" x', ["quoted word", "x"]),
    ('a=b"c d"e f', ['a=b"c d"e', "f"]),          # inner quotes kept, as the kernel keeps them
    ('a="b"c', ['a=b"c']),                         # only a closing quote at the very end is removed
    ('a=""', ["a="]),
    ("a=", ["a="]),
    ('a="', ["a="]),
    ('a="b c', ["a=b c"]),                         # an unterminated quote runs to the end
    ("=x", ["=x"]),                                # "=" at index 0 is not a separator
    ("a=b=c", ["a=b=c"]),
    ("x -- y=1 z", ["x", "--", "y=1", "z"]),
    ('--  "a b"', ["--", "a b"]),
])
def test_split(text, words):
    assert split(text) == words


def test_pairs_keep_first_equals_after_index_0():
    assert cmdline._pairs("=a=b c") == [("=a", "b"), ("c", None)]
    assert cmdline._pairs('p="v w" bare') == [("p", "v w"), ("bare", None)]


# --- what goes to init, as init/main.c does it ---

def test_unknown_words_go_to_init_like_the_kernel():
    o = parse("ro single 3 splash BOOT_IMAGE=/vmlinuz LANG=C LANG=de_DE.UTF-8 foo.bar=1 some.flag console=ttyS0")
    assert o.init_args == ["single", "3", "splash"]
    assert o.init_env == ["LANG=de_DE.UTF-8"]  # a repeated key replaces in place; BOOT_IMAGE= is dropped
    assert o.params["console"] == "ttyS0"
    assert o.params["some.flag"] is None
    assert "console=ttyS0" not in o.init_env  # the kernel's own parameter


def test_bootloader_identifiers_are_dropped():
    o = parse("BOOT_IMAGE=/vmlinuz kexec kexec_jump=1 BOOT_IMAGE")
    assert o.init_env == [] and o.init_args == ["BOOT_IMAGE"]


def test_words_before_init_are_dropped():
    # init/main.c init_setup(): LILO's leading "auto" must not reach init; rdinit= does the same.
    o = parse("auto single init=/bin/sh emergency -- tail")
    assert o.init_args == ["emergency", "tail"]
    assert parse("x rdinit=/init y").init_args == ["y"]
    assert parse("init=/sbin/init", defaults="single").init_args == []


def test_everything_after_dashes_goes_to_init():
    o = parse('quiet -- --log-level=debug "x=a b" toram rd.break')
    assert o.init_args == ["--log-level=debug", "x=a b", "toram", "rd.break"]
    assert o.toram == "no"
    assert o.break_at == []
    assert "toram" not in o.params


def test_our_parameters_do_not_reach_init():
    o = parse("toram boot=live archisolabel=X live-media-path=/l rd.live.image img_dev=/dev/sda1 img_loop=/a.iso")
    assert o.init_args == []
    assert o.init_env == []


def test_empty_line_defaults():
    o = parse("")
    assert o.root is None and o.live is None
    assert o.readonly is True
    assert o.live_dir == "live" and o.live_image == "filesystem.squashfs"
    assert o.image_paths == ["live/filesystem.squashfs", "live/filesystem.erofs", "LiveOS/squashfs.img",
                             "arch/x86_64/airootfs.sfs", "arch/x86_64/airootfs.erofs"]
    assert o.toram == "no" and o.checksum is False and o.overlay_size is None
    assert o.shell is None and o.panic is None and o.loglevel is None and o.rootdelay is None
    assert o.md_all is True and o.lvm_all is True
    assert o.params == {} and o.init_args == [] and o.init_env == [] and o.module_params == {}


def test_options_constructor_matches_empty_parse():
    assert repr(cmdline.Options()).startswith("Options(root=None, live=None")
    assert cmdline.Options().as_dict() == parse("").as_dict()
    assert set(parse("").as_dict()) == set(cmdline.Options().__dict__)


# --- plain roots ---

def test_plain_root():
    o = parse("root=UUID=0a3e-11 rootfstype=ext4 rootflags=noatime,errors=remount-ro rw init=/lib/systemd/systemd")
    assert o.root == "UUID=0a3e-11"
    assert o.live is None
    assert o.rootfstype == "ext4"
    assert o.rootflags == "noatime,errors=remount-ro"
    assert o.readonly is False
    assert o.init == "/lib/systemd/systemd"


def test_ro_rw_last_wins():
    assert parse("rw ro").readonly is True
    assert parse("ro rw").readonly is False
    assert parse("rw", defaults="ro").readonly is False
    assert parse("ro", defaults="rw").readonly is True


def test_rootwait_and_rootdelay():
    o = parse("rootwait rootdelay=7")
    assert o.rootwait is True and o.rootdelay == 7
    o = parse("rootwait=12")  # Linux 6.5: wait at most 12 seconds
    assert o.rootwait is False and o.rootdelay == 12


def test_quiet_debug_loglevel():
    o = parse("quiet loglevel=3")
    assert o.quiet is True and o.debug is False and o.loglevel == 3
    assert parse("rd.debug").debug is True
    assert parse("debug").debug is True
    assert parse("loglevel=0").loglevel == 0


# --- live boots ---

def test_fedora_live():
    o = parse(FEDORA)
    assert o.root == "live:CDLABEL=Fedora-WS-Live-40-1-14"
    assert o.live == "CDLABEL=Fedora-WS-Live-40-1-14"
    assert o.quiet is True
    assert o.init_args == ["rhgb"]
    assert o.init_env == []
    assert o.params["BOOT_IMAGE"] == "/images/pxeboot/vmlinuz"


@pytest.mark.parametrize("root, live", [
    ("live:LABEL=LIVE", "LABEL=LIVE"),
    ("live:UUID=2024-05-01-10-00-00-00", "UUID=2024-05-01-10-00-00-00"),
    ("live:PARTUUID=6b4d0c6e-02", "PARTUUID=6b4d0c6e-02"),
    ("live:PARTLABEL=live", "PARTLABEL=live"),
    ("live:/dev/sdb1", "/dev/sdb1"),
    ("live:/images/live.img", "/images/live.img"),
    ("live:", ""),
])
def test_root_live_specs_verbatim(root, live):
    assert parse("root=" + root).live == live


def test_dracut_legacy_rd_live_image():
    assert parse("root=CDLABEL=X rd.live.image").live == "CDLABEL=X"
    assert parse("liveimg root=LABEL=Y").live == "LABEL=Y"
    assert parse("root=CDLABEL=X").live is None
    assert parse("rd.live.image").live == ""


def test_arch_live():
    o = parse(ARCH)
    assert o.live == "LABEL=ARCH_202405"
    assert o.live_dir == "arch"
    assert o.overlay_size == "1g"
    assert o.image_paths == ["arch/filesystem.squashfs", "arch/filesystem.erofs", "LiveOS/squashfs.img",
                             "arch/x86_64/airootfs.sfs", "arch/x86_64/airootfs.erofs"]
    o = parse("archisodevice=/dev/sr0 archisobasedir=/myarch/")
    assert o.live == "/dev/sr0"
    assert o.image_paths[-2:] == ["myarch/x86_64/airootfs.sfs", "myarch/x86_64/airootfs.erofs"]


def test_debian_live_with_iso_file():
    o = parse(DEBIAN)
    assert o.live == ""
    assert o.iso_file == "/iso/debian-live.iso"
    assert o.init_args == ["components", "splash"]


def test_boot_live_scans_everything():
    assert parse("boot=live").live == ""
    assert parse("boot=casper").live == ""
    assert parse("boot=local").live is None
    assert parse("boot=live live-media=/dev/sdc1").live == "/dev/sdc1"


def test_iso_file_on_partition():
    o = parse("img_dev=UUID=1234-ABCD img_loop=/isos/arch.iso")
    assert o.iso_dev == "UUID=1234-ABCD"
    assert o.iso_file == "/isos/arch.iso"
    assert o.live == ""
    o = parse("iso-scan/filename=/ubuntu.iso")
    assert o.iso_file == "/ubuntu.iso"


def test_root_live_wins_over_scan_and_a_later_root_replaces_it():
    assert parse("boot=live root=live:LABEL=A").live == "LABEL=A"
    assert parse("root=/dev/vda2", defaults="root=live:LABEL=A").live is None
    assert parse("archisolabel=B root=live:LABEL=A").live == "LABEL=A"


def test_live_dir_and_image():
    o = parse("rd.live.dir=/LiveOS/ rd.live.squashimg=rootfs.img")
    assert o.live_dir == "LiveOS" and o.live_image == "rootfs.img"
    assert o.image_paths == ["LiveOS/rootfs.img", "LiveOS/squashfs.img", "arch/x86_64/airootfs.sfs",
                             "arch/x86_64/airootfs.erofs"]
    o = parse("live-media-path=/live")
    assert o.image_paths == ["live/filesystem.squashfs", "live/filesystem.erofs", "LiveOS/squashfs.img",
                             "arch/x86_64/airootfs.sfs", "arch/x86_64/airootfs.erofs"]
    o = parse("rd.live.dir=/ rd.live.squashimg=squashfs.img")  # the image in the medium's top directory
    assert o.image_paths[0] == "squashfs.img"


@pytest.mark.parametrize("text, toram", [
    ("toram", "yes"), ("toram=filesystem.squashfs", "yes"), ("rd.live.ram=1", "yes"), ("rd.live.ram", "yes"),
    ("rd.live.ram=0", "no"), ("copytoram=y", "yes"), ("copytoram", "yes"), ("copytoram=n", "no"),
    ("copytoram=auto", "auto"), ("toram copytoram=n", "no"), ("copytoram=auto rd.live.ram=1", "yes"),
])
def test_toram(text, toram):
    assert parse(text).toram == toram


@pytest.mark.parametrize("text, size", [
    ("rd.live.overlay.size=4096", "4096m"), ("cow_spacesize=256M", "256m"), ("cow_spacesize=75%", "75%"),
    ("cow_spacesize=2g", "2g"), ("cow_spacesize=1048576", "1048576"),
])
def test_overlay_size(text, size):
    assert parse(text).overlay_size == size


def test_checksum():
    assert parse("checksum=y").checksum is True
    assert parse("checksum").checksum is True
    assert parse("rd.live.check").checksum is True
    assert parse("verify-checksums").checksum is True
    assert parse("checksum=n", defaults="checksum=y").checksum is False


# --- modules ---

def test_modules_and_blacklist_accumulate():
    o = parse("modules=loop,squashfs rd.driver.pre=overlay modules=usb-storage,loop "
              "module_blacklist=nouveau rd.driver.blacklist=floppy,pcspkr modprobe.blacklist=snd-hda-intel",
              defaults="modules=virtio_blk")
    assert o.modules == ["virtio_blk", "loop", "squashfs", "overlay", "usb_storage"]
    assert o.blacklist == ["nouveau", "floppy", "pcspkr", "snd_hda_intel"]


def test_module_params():
    o = parse('usbcore.autosuspend=-1 snd-hda-intel.model=auto snd_hda_intel.power-save=1 '
              'snd_hda_intel.power_save=0 i915.modeset a/b.c=1 '
              'e1000e.InterruptThrottleRate="3000 3000" usbcore.autosuspend=2 '
              'rd.live.foo=1 systemd.unit=rescue.target')
    assert o.module_params == {
        "usbcore": "autosuspend=2",
        "snd_hda_intel": "model=auto power_save=0",
        "i915": "modeset",
        "e1000e": 'InterruptThrottleRate="3000 3000"',
    }
    assert o.init_env == [] and o.init_args == []


# --- break points, shell, panic, md, lvm ---

def test_break_points():
    assert parse("rd.break").break_at == ["handoff"]
    assert parse("rd.break=").break_at == ["handoff"]
    assert parse("rd.break=cmdline rd.break=pre-udev rd.break=initqueue rd.break=pre-mount").break_at == [
        "cmdline", "modules", "devices", "medium"]
    assert parse("rd.break=mount rd.break=pre-pivot rd.break=cleanup rd.break=toram").break_at == [
        "root", "handoff", "toram"]
    assert parse("rd.break=premount rd.break=pre-trigger rd.break=early").break_at == [
        "medium", "modules", "early"]


def test_every_contract_stage_is_a_break_point():
    from mpinit_agent import contract

    for stage in contract.STAGES:
        assert parse("rd.break=" + stage).break_at == [stage]


def test_shell_and_panic():
    assert parse("rd.shell=0").shell is False
    assert parse("rd.shell=1").shell is True
    assert parse("rd.shell").shell is True
    assert parse("panic=30").panic == 30
    assert parse("panic=-1").panic == -1


def test_md_and_lvm():
    o = parse("rd.md.uuid=a1:b2:c3:d4 rd.md.uuid=e5:f6:a7:b8 rd.lvm.vg=vg0")
    assert o.md_uuids == ["a1:b2:c3:d4", "e5:f6:a7:b8"] and o.md_all is False
    assert o.lvm_vgs == ["vg0"] and o.lvm_all is False
    o = parse("rd.md=0 rd.md.uuid=a1 rd.lvm=0")
    assert o.md_all is False and o.md_uuids == []
    assert o.lvm_all is False and o.lvm_vgs == []
    o = parse("rd.md=1 rd.lvm=1")
    assert o.md_all is True and o.lvm_all is True


# --- defaults and params ---

def test_defaults_first_then_cmdline_wins():
    o = parse("root=/dev/vda loglevel=7", defaults="root=LABEL=x loglevel=3 quiet")
    assert o.root == "/dev/vda" and o.loglevel == 7 and o.quiet is True
    assert o.params["root"] == "/dev/vda" and o.params["quiet"] is None


def test_dash_and_underscore_are_one_in_names():
    assert parse("module-blacklist=a").blacklist == ["a"]
    assert parse("live_media_path=x").live_dir == "x"
    assert parse("root-delay=3").init_env == ["root-delay=3"]  # not a kernel alias of rootdelay: passed on


# --- errors ---

@pytest.mark.parametrize("text, named", [
    ("rootdelay=abc", "rootdelay=abc"),
    ("rootdelay=-3", "rootdelay=-3"),
    ("rootdelay", "rootdelay"),
    ("rootwait=x", "rootwait=x"),
    ("copytoram=maybe", "copytoram=maybe"),
    ("loglevel=99", "loglevel=99"),
    ("loglevel=", "loglevel="),
    ("rd.break=nowhere", "rd.break=nowhere"),
    ("rd.live.overlay.size=-1", "rd.live.overlay.size=-1"),
    ("rd.live.overlay.size=0", "rd.live.overlay.size=0"),
    ("cow_spacesize=0", "cow_spacesize=0"),
    ("cow_spacesize=150%", "cow_spacesize=150%"),
    ("cow_spacesize=lots", "cow_spacesize=lots"),
    ("rd.shell=perhaps", "rd.shell=perhaps"),
    ("rd.live.ram=2", "rd.live.ram=2"),
    ("panic=soon", "panic=soon"),
    ("root=", "root="),
    ("ro=1", "ro=1"),
    ("checksum=sha1", "checksum=sha1"),
])
def test_bad_values_name_the_parameter(text, named):
    with pytest.raises(CmdlineError, match=named) as info:
        parse("quiet " + text)
    assert info.value.param == named.split("=")[0]
    assert isinstance(info.value, ValueError)


def test_error_in_defaults_says_so():
    with pytest.raises(CmdlineError, match="configured default cmdline"):
        parse("quiet", defaults="rootdelay=soon")


def test_break_error_lists_the_stages():
    with pytest.raises(CmdlineError, match="early, cmdline, modules"):
        parse("rd.break=nowhere")


def test_alias_name():
    assert cmdline.parse_cmdline is parse


# --- storage: LUKS (dracut, systemd, mkinitcpio) and rd.lvm.lv= ---

def test_luks_parameters():
    o = parse("rd.luks.uuid=luks-ABCD rd.luks.uuid=abcd rd.luks.name=1234-5=home rd.luks.key=/k:LABEL=USB:UUID=ab "
              "rd.luks.key=1234=/k2 rd.luks.options=discard,readonly rd.luks.timeout=10s")
    assert o.luks and o.luks_uuids == ["abcd", "1234-5"] and o.luks_names == {"1234-5": "home"}
    assert o.luks_keys == [("/k", "LABEL=USB", "UUID=ab"), ("/k2", None, "UUID=1234")]
    assert o.luks_options == ["discard", "readonly"] and o.luks_timeout == 10
    assert not parse("rd.luks=0").luks


def test_mkinitcpio_cryptdevice_and_cryptkey():
    o = parse("cryptdevice=UUID=ab-cd:root:allow-discards cryptkey=LABEL=K:ext4:/k")
    assert o.cryptdevices == [("UUID=ab-cd", "root", ["allow-discards"])] and o.cryptkey == "LABEL=K:ext4:/k"
    assert parse("cryptkey=rootfs:/a:b").cryptkey == "rootfs:/a:b"


def test_rd_lvm_lv_implies_its_group():
    o = parse("rd.lvm.lv=vg0/root rd.lvm.lv=/vg0/usr")
    assert o.lvm_lvs == ["vg0/root", "vg0/usr"] and o.lvm_vgs == ["vg0"] and not o.lvm_all
    assert parse("rd.lvm=0 rd.lvm.lv=vg0/root").lvm_lvs == []


@pytest.mark.parametrize("line, words", [
    ("rd.luks.uuid=xyz", "is not a LUKS UUID"),
    ("rd.luks.name=abcd", "expected <UUID>=<name>"),
    ("rd.luks.key=relative", "absolute keypath"),
    ("rd.luks.timeout=soon", "whole number of seconds"),
    ("cryptdevice=/dev/sda2", "expected <device>:<name>"),
    ("cryptkey=/dev/sdb", "expected rootfs:<path>"),
    ("rd.lvm.lv=root", "<volume group>/<logical volume>"),
])
def test_storage_parameter_errors(line, words):
    with pytest.raises(CmdlineError, match=words):
        parse(line)


# --- properties (CPython only: hypothesis; the MicroPython runner only sees top-level test functions) ---

try:
    from hypothesis import given, strategies as st
except ImportError:  # MicroPython, or a CPython without the test extras
    given = None

if given is not None:
    _KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.-/0123456789", min_size=1, max_size=12)
    _VALUE = st.text(alphabet=st.characters(blacklist_characters='"', blacklist_categories=("Cs",)), max_size=20)
    _SPACES = st.text(alphabet=" \t\n", min_size=1, max_size=3)

    @given(st.lists(st.tuples(_KEY, _VALUE), max_size=8), _SPACES)
    def test_property_quoted_values_round_trip(pairs, sep):
        # key="any value without a double quote" always comes back as key=value, whitespace and "=" included.
        text = sep.join('%s="%s"' % (k, v) for k, v in pairs)
        assert split(text) == ["%s=%s" % (k, v) for k, v in pairs]

    _WORD = st.text(alphabet="abc=._/:01", min_size=1, max_size=10).filter(lambda w: not w.startswith("="))

    @given(st.lists(_WORD, max_size=10), _SPACES)
    def test_property_unknown_words_go_where_the_kernel_sends_them(words, sep):
        # None of these words is a parameter we know: each lands in init's argv, init's environment, or (a "."
        # in the name) nowhere but params, and parsing never raises.
        assert split(sep + sep.join(words) + sep) == words
        o = parse(" ".join(words))
        env = {}
        args = []
        for w in words:
            key, eq, val = w.partition("=")
            if "." in key:
                continue
            if eq:
                env[key] = val
            else:
                args.append(w)
        assert o.init_args == args
        assert sorted(o.init_env) == sorted("%s=%s" % kv for kv in env.items())


# --- the real kernel agrees (CPython, QEMU): what reaches init's argv and environment ---

# Quoting edge cases, repeated keys, kernel-owned words, dotted words, words before init= (dropped), bootloader
# identifiers and "--", all in one line (the init= program is never run: /init exists in the initramfs). The only
# parameters of ours in it are dotted (rd.*) or the kernel's own (quiet, ro, rootwait, loglevel=, panic=), which
# the kernel never passes on either, so parse()'s init_args/init_env must equal what the kernel hands to init.
KERNEL_LINE = ('auto BOOT_IMAGE=/vmlinuz console=ttyS0 quiet init=/sbin/init ro rootwait panic=-1 loglevel=3 kexec '
               'single 3 splash LANG=C '
               'LANG=de_DE.UTF-8 "quoted word" key="a b c" "whole=x y" inner=a"b c"d usbcore.autosuspend=-1 '
               'some.flag rd.break=pre-mount =lead -- --log-level=debug "x=a b" toram tail')

_SHOW_INIT_C = r"""
#include <stdio.h>
#include <unistd.h>
#include <sys/reboot.h>
extern char **environ;
int main(int argc, char **argv) {
    printf("SHOW-BEGIN\n");
    for (int i = 1; i < argc; i++) printf("ARG[%s]\n", argv[i]);
    for (char **e = environ; *e; e++) printf("ENV[%s]\n", *e);
    printf("SHOW-END\n");
    fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
"""


@pytest.mark.e2e
def test_kernel_agrees_on_what_reaches_init(debian_kernel, tmp_path):
    import shutil
    import stat
    import subprocess

    from conftest import require_tools
    from mpinit import cpio, qemu

    require_tools("qemu-system-x86_64")
    cc = shutil.which("musl-gcc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("missing tools: musl-gcc or gcc (to build a static test init)")
    src = tmp_path / "show.c"
    src.write_text(_SHOW_INIT_C)
    exe = tmp_path / "show"
    subprocess.run([cc, "-static", "-Os", "-o", str(exe), str(src)], check=True)
    entries = [
        cpio.Entry(".", stat.S_IFDIR | 0o755),
        cpio.Entry("dev", stat.S_IFDIR | 0o755),
        cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        cpio.Entry("init", stat.S_IFREG | 0o755, data=exe.read_bytes()),
    ]
    initrd = tmp_path / "initrd.cpio"
    initrd.write_bytes(cpio.write_newc(entries))
    result = qemu.boot(debian_kernel.vmlinuz, initrd, append=KERNEL_LINE, memory_mb=256, timeout_s=120,
                       marker="SHOW-END")
    assert result.ok, result.output[-3000:]
    args, env = [], []
    inside = False
    for line in result.output.split("\n"):
        if line.startswith("SHOW-BEGIN"):
            inside = True
        elif line.startswith("SHOW-END"):
            break
        elif inside and line.startswith("ARG[") and line.endswith("]"):
            args.append(line[4:-1])
        elif inside and line.startswith("ENV[") and line.endswith("]"):
            env.append(line[4:-1])
    # init/main.c: envp_init starts with HOME=/ and TERM=linux; the rest comes from the command line.
    assert env[:2] == ["HOME=/", "TERM=linux"], result.output[-3000:]
    o = parse(KERNEL_LINE)
    assert o.init_args == args
    assert o.init_env == env[2:]
    assert o.init_args == ["single", "3", "splash", "quoted word", "=lead", "--log-level=debug", "x=a b", "toram",
                           "tail"]
    assert o.init_env == ["LANG=de_DE.UTF-8", "key=a b c", "whole=x y", 'inner=a"b c"d']
