"""Kernel hooks: installing a kernel (re)builds /boot/initrd.img-<version> with mpinit, removing it removes it.

`mpinit install-hooks [--root DIR]` writes three small shell scripts into DIR (default /) that all call
`mpinit kernel-hook add|remove VERSION [IMAGE]`, where the logic is (here, in Python, tested):

    /etc/kernel/postinst.d/zz-mpinit       Debian's kernel hook directories: the linux-image packages' maintainer
    /etc/kernel/postrm.d/zz-mpinit         scripts run them with run-parts, arguments <version> <image path>
                                           (Debian Kernel Handbook, "Kernel hooks"; /usr/share/doc/debian-kernel-
                                           handbook). "zz-" sorts after initramfs-tools' and dracut's hooks, so
                                           the image mpinit writes is the one that stays.
    /etc/kernel/install.d/50-mpinit.install    a kernel-install(8) plugin: <command> <version> <entry dir>
                                           <image> ...; `add` builds the image (and, when kernel-install gives a
                                           $KERNEL_INSTALL_STAGING_AREA, copies it there as `initrd`, as dracut's
                                           50-dracut.install does, for the later plugins), `remove` removes it.

The scripts name the `mpinit` they were installed with (its absolute path; $MPINIT overrides) and pass
$MPINIT_HOOK_ROOT on as --root, so a scratch root can be driven exactly as the package manager drives /.

What goes into the image comes from /etc/mpinit/pack.conf (a default one is written when there is none):

    # comment
    key = value

one setting a line; list keys (modules, binaries, hooks, add) take values separated by commas or spaces and
may repeat (the values add up); other keys may appear once. Keys and their `mpinit pack` options:

    modules = generic-live,btrfs      --modules     (default generic-live)
    binaries = /sbin/e2fsck           --binary      (with --root: the root's file, as --add ROOT/path:/path)
    hooks = /etc/mpinit/hooks/x.py    --hook        (paths inside the root)
    add = /etc/foo:/etc/foo           --add SRC:DEST  (SRC inside the root)
    cmdline = rootwait                --cmdline
    compress = zstd                   --compress
    keymap = de-latin1                --keymap
    crypttab = /etc/crypttab          --crypttab    (inside the root)
    init = /path/to/mpinit-init       --init        (default: the runtime mpinit finds itself)
    luks = yes|no, mdadm = yes|no, lvm = yes|no, host_only = yes|no, strict = yes|no    the flags

The module tree is <root>/lib/modules/<version>; the output <root>/boot/initrd.img-<version>, written atomically
by `mpinit pack` (a failed build leaves the previous image in place).
"""

import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

CONF = "etc/mpinit/pack.conf"
POSTINST = "etc/kernel/postinst.d/zz-mpinit"
POSTRM = "etc/kernel/postrm.d/zz-mpinit"
INSTALL_PLUGIN = "etc/kernel/install.d/50-mpinit.install"
INITRD = "boot/initrd.img-%s"

LIST_KEYS = {"modules": "--modules", "binaries": "--binary", "hooks": "--hook", "add": "--add"}
VALUE_KEYS = {"cmdline": "--cmdline", "compress": "--compress", "keymap": "--keymap", "crypttab": "--crypttab",
              "init": "--init"}
FLAG_KEYS = {"luks": "--luks", "mdadm": "--mdadm", "lvm": "--lvm", "host_only": "--host-only",
             "strict": "--strict"}
_BOOL = {"yes": True, "true": True, "1": True, "on": True, "no": False, "false": False, "0": False, "off": False}
_KVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")   # what a kernel release looks like; never a path

DEFAULT_CONF = """\
# mpinit: what goes into the initramfs of installed kernels, /boot/initrd.img-<version>.
# Read by the kernel hooks of `mpinit install-hooks` (/etc/kernel/postinst.d/zz-mpinit, postrm.d/zz-mpinit and
# /etc/kernel/install.d/50-mpinit.install), which run `mpinit pack` when a kernel is installed.
# One `key = value` a line; `#` starts a comment. List keys (modules, binaries, hooks, add) take values separated
# by commas or spaces and may repeat; the others appear once. Boolean keys take yes or no.

# Module names and sets (generic-live: VM, SATA, NVMe, USB and SD storage, ext4, vfat, squashfs, overlay, ...;
# generic-net: Ethernet drivers). Dependencies come along.
modules = generic-live

# Programs for the initramfs, with their libraries; an e2fsck makes the root checked before it is mounted.
#binaries = /sbin/e2fsck

# Python hooks run at named points of the boot (docs/hooks.md).
#hooks = /etc/mpinit/hooks/example.py

# Default kernel parameters (the boot loader's command line wins).
#cmdline = rootwait

# Storage stacks of the installed system: cryptsetup, mdadm, lvm with their modules; /etc/crypttab baked in.
#luks = no
#mdadm = no
#lvm = no
#crypttab = /etc/crypttab

# Also ship the modules this machine's devices use.
#host_only = no

# Compression: gzip, zstd, xz, lz4, none (docs: mpinit pack --help).
#compress = zstd
"""


class HookError(Exception):
    """Bad pack.conf, kernel version or root; the message names the file and line or the input."""


@dataclass
class PackConf:
    lists: dict = field(default_factory=dict)     # key -> [values]
    values: dict = field(default_factory=dict)    # key -> value
    flags: dict = field(default_factory=dict)     # key -> bool


def parse_conf(text, name=CONF):
    """PackConf of pack.conf text; HookError naming `name` and the line for anything we do not understand."""
    conf = PackConf()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        where = "%s line %d" % (name, n)
        if not sep or not key:
            raise HookError("%s: %r is not `key = value`" % (where, line[:80]))
        if key in LIST_KEYS:
            items = [v for v in re.split(r"[,\s]+", value) if v]
            if not items:
                raise HookError("%s: %s has no value" % (where, key))
            conf.lists.setdefault(key, []).extend(items)
        elif key in VALUE_KEYS:
            if key in conf.values:
                raise HookError("%s: %s given a second time (it takes one value)" % (where, key))
            if not value:
                raise HookError("%s: %s has no value" % (where, key))
            conf.values[key] = value
        elif key in FLAG_KEYS:
            if key in conf.flags:
                raise HookError("%s: %s given a second time" % (where, key))
            if value.lower() not in _BOOL:
                raise HookError("%s: %s = %r: expected yes or no" % (where, key, value))
            conf.flags[key] = _BOOL[value.lower()]
        else:
            known = sorted(list(LIST_KEYS) + list(VALUE_KEYS) + list(FLAG_KEYS))
            raise HookError("%s: unknown key %r (known: %s)" % (where, key, ", ".join(known)))
    for spec in conf.lists.get("add", ()):
        if ":" not in spec or not spec.partition(":")[0]:
            raise HookError("%s: add = %r: expected SRC:DEST" % (name, spec))
    return conf


def check_kver(kver):
    if not kver or not _KVER.match(kver) or kver in (".", ".."):
        raise HookError("kernel version %r: not a kernel release (like 6.1.0-41-amd64)" % kver)
    return kver


def _in_root(root, path):
    """An absolute path of the installed system, seen from here (under `root`)."""
    return str(Path(root) / str(path).lstrip("/")) if str(root) != "/" else str(path)


def pack_argv(conf, kver, root="/"):
    """The `mpinit pack` arguments (without the leading "pack") for kernel `kver` of the system at `root`."""
    root = str(root)
    argv = ["-o", _in_root(root, "/" + INITRD % kver),
            "--kernel-modules", _in_root(root, "/lib/modules/%s" % kver)]
    argv += ["--modules", ",".join(conf.lists.get("modules", ["generic-live"]))]
    for b in conf.lists.get("binaries", ()):
        argv += ["--binary", b] if root == "/" else ["--add", "%s:%s" % (_in_root(root, b), b)]
    for h in conf.lists.get("hooks", ()):
        argv += ["--hook", _in_root(root, h)]
    for spec in conf.lists.get("add", ()):
        src, _, dest = spec.partition(":")
        argv += ["--add", "%s:%s" % (_in_root(root, src), dest or src)]
    for key, flag in VALUE_KEYS.items():
        if key in conf.values:
            value = conf.values[key]
            argv += [flag, _in_root(root, value) if key == "crypttab" else value]
    for key, flag in FLAG_KEYS.items():
        if conf.flags.get(key):
            argv.append(flag)
    return argv


def load_conf(root="/"):
    path = Path(_in_root(root, "/" + CONF))
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise HookError("%s: no such file (`mpinit install-hooks` writes a default one)" % path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise HookError("%s: %s" % (path, getattr(e, "strerror", None) or e)) from None
    return parse_conf(text, str(path))


def add(kver, root="/", staging=None, log=print):
    """Build <root>/boot/initrd.img-<kver> with `mpinit pack` (in this process); returns its path."""
    from . import cli

    check_kver(kver)
    conf = load_conf(root)
    modules = Path(_in_root(root, "/lib/modules/%s" % kver))
    if not modules.is_dir():
        raise HookError("%s: no such directory: kernel %s's modules are not installed" % (modules, kver))
    argv = ["pack"] + pack_argv(conf, kver, root)
    import shlex

    log("mpinit kernel-hook: mpinit %s" % shlex.join(argv))
    status = cli.main(argv)
    if status:
        raise HookError("mpinit pack failed (status %d): %s kept as it was" % (status, argv[2]))
    out = Path(argv[2])
    if staging:
        # kernel-install(8): plugins after us take the initrd from the staging area.
        from .atomic import atomic_path

        with atomic_path(Path(staging) / "initrd") as tmp:
            shutil.copyfile(out, tmp)
    return out


def remove(kver, root="/", log=print):
    check_kver(kver)
    path = Path(_in_root(root, "/" + INITRD % kver))
    try:
        path.unlink()
        log("mpinit kernel-hook: removed %s" % path)
    except FileNotFoundError:
        pass
    return path


# --- the installed scripts --------------------------------------------------------------------------------------

_HEAD = """\
#!/bin/sh
# Installed by `mpinit install-hooks`: %(what)s
# The initramfs contents come from /etc/mpinit/pack.conf. $MPINIT overrides the mpinit used;
# $MPINIT_HOOK_ROOT runs it on another root (a scratch tree) instead of /.
set -e
MPINIT="${MPINIT:-%(mpinit)s}"
# mpinit uninstalled but these left behind: say so, but do not fail the kernel package (initramfs-tools' hook
# also exits 0 without update-initramfs).
[ -x "$MPINIT" ] || { echo "mpinit hook: $MPINIT not found: no mpinit initramfs built or removed" >&2; exit 0; }
"""

DEBIAN_HOOK = _HEAD + """\
# Debian kernel hook: run-parts calls it with <version> <image path>. Output goes to stderr: the maintainer
# scripts that run it may be talking to debconf on stdout (initramfs-tools' hook does the same).
[ -n "$1" ] || { echo "zz-mpinit: no kernel version given" >&2; exit 2; }
exec "$MPINIT" kernel-hook %(command)s ${MPINIT_HOOK_ROOT:+--root "$MPINIT_HOOK_ROOT"} "$1" >&2
"""

INSTALL_PLUGIN_SCRIPT = _HEAD + """\
# kernel-install(8) plugin: <command> <version> <entry dir> <kernel image> [<initrd>...]
case "$1" in
    add|remove) ;;
    *) exit 0 ;;
esac
[ -n "$2" ] || { echo "50-mpinit.install: no kernel version given" >&2; exit 2; }
exec "$MPINIT" kernel-hook "$1" ${MPINIT_HOOK_ROOT:+--root "$MPINIT_HOOK_ROOT"} \\
    ${KERNEL_INSTALL_STAGING_AREA:+--staging "$KERNEL_INSTALL_STAGING_AREA"} "$2"
"""


def _sh_quote_dq(text):
    # Inside "...": \\, ", $ and ` are special to sh.
    return re.sub(r'([\\"$`])', r"\\\1", text)


def scripts(mpinit):
    """{relative path: script text} for the `mpinit` at path `mpinit`."""
    m = _sh_quote_dq(str(mpinit))
    return {
        POSTINST: DEBIAN_HOOK % dict(what="build /boot/initrd.img-<version> with mpinit after a kernel is "
                                          "installed", mpinit=m, command="add"),
        POSTRM: DEBIAN_HOOK % dict(what="remove /boot/initrd.img-<version> when its kernel is removed", mpinit=m,
                                   command="remove"),
        INSTALL_PLUGIN: INSTALL_PLUGIN_SCRIPT % dict(what="kernel-install plugin building/removing "
                                                          "/boot/initrd.img-<version> with mpinit", mpinit=m),
    }


def own_mpinit():
    """The absolute path of the `mpinit` command running now (the console script of this installation)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "mpinit" and argv0.exists():
        return argv0.resolve()
    found = shutil.which("mpinit")
    if found:
        return Path(found).resolve()
    raise HookError("cannot find the `mpinit` command to name in the hooks: give --mpinit PATH")


def install(root="/", mpinit=None, log=print):
    """Write the three scripts (mode 0755) and, when there is none, the default pack.conf; returns the paths
    written."""
    from .atomic import atomic_open

    root = Path(root)
    if not root.is_dir():
        raise HookError("--root %s: no such directory" % root)
    mpinit = Path(mpinit) if mpinit else own_mpinit()
    if not mpinit.is_absolute():
        raise HookError("--mpinit %s: give an absolute path (the hooks run from anywhere)" % mpinit)
    written = []
    for rel, text in scripts(mpinit).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, 0o755) as f:
            f.write(text.encode())
        written.append(path)
    conf = root / CONF
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(conf, 0o644) as f:
            f.write(DEFAULT_CONF.encode())
        written.append(conf)
    else:
        load_conf(root)   # an existing one must parse: say so now rather than at the next kernel upgrade
    for p in written:
        log("mpinit install-hooks: wrote %s" % p)
    return written
