"""The test live root: static busybox whose /sbin/init reports what the boot produced, then powers off.

The report is what the end-to-end tests and the demo assert on, printed to the console:

    MPINIT-LIVE-OK uptime=<s> rootfs=<fstype of /> rw=<yes|no> cmdline=<the kernel command line>
    MPINIT-MOUNTS-BEGIN
    <the lines of /proc/mounts>
    MPINIT-MOUNTS-END

`rootfs` is the type of the last `/` entry in /proc/mounts (the one visible after switch_root: `overlay` for a
live boot, `ext4` for a plain root); `rw` says whether creating a file in / works, not what the mount options
say. Built without root privileges: the tree is a plain directory (owner is whoever runs the build; squashfs
and ext4 images are made with everything owned by root).
"""

import hashlib
import shutil
from pathlib import Path

from .atomic import atomic_path
from .runner import ToolError, find_tool, run

MARKER = "MPINIT-LIVE-OK"
MOUNTS_BEGIN = "MPINIT-MOUNTS-BEGIN"
MOUNTS_END = "MPINIT-MOUNTS-END"

# /sbin/init of the live root, run by busybox ash. The initramfs hands over with the console on fds 0-2; a root
# booted some other way may lack them, so the script mounts what it needs and reopens the console itself.
INIT_SCRIPT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
[ -c /dev/console ] || mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
up=$(cut -d' ' -f1 /proc/uptime)
fstype=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)
if touch /.mpinit-rw-probe 2>/dev/null; then rw=yes; rm -f /.mpinit-rw-probe; else rw=no; fi
echo "MPINIT-LIVE-OK uptime=$up rootfs=$fstype rw=$rw cmdline=$(cat /proc/cmdline)"
echo "MPINIT-MOUNTS-BEGIN"
cat /proc/mounts
echo "MPINIT-MOUNTS-END"
sync
poweroff -f
"""

OS_RELEASE = 'NAME="mpinit test live root"\nID=mpinit-test\nPRETTY_NAME="mpinit test live root (busybox)"\n'

DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root", "mnt")


def busybox_path(arch=None):
    """The static busybox to put in the root (busybox-static's /bin/busybox). arch: another architecture's
    (e.g. "arm64"): Debian's busybox-static for it, downloaded and unpacked into build/busybox-<arch>."""
    from . import arch as archmod

    if arch and archmod.get(arch) is not archmod.native():
        from .paths import build_dir

        a = archmod.get(arch)
        root = archmod.fetch_deb("busybox-static", a, build_dir() / ("busybox-" + a.name))
        path = root / "bin" / "busybox"
        if not path.is_file() or archmod.of_elf(path) is not a:
            raise ToolError("%s: not a %s busybox" % (path, a.name))
        return path
    path = Path(find_tool("busybox", "busybox-static"))
    head = path.read_bytes()[:4096]
    if b"ld-linux" in head or b"/lib64/ld" in head:
        raise ToolError("%s is dynamically linked: install busybox-static" % path)
    return path


def inputs_digest(busybox=None):
    """A short hash of everything the root is made of: rebuild when it changes."""
    h = hashlib.sha256()
    h.update(Path(busybox or busybox_path()).read_bytes())
    h.update(INIT_SCRIPT.encode())
    h.update(OS_RELEASE.encode())
    h.update(repr(DIRS).encode())
    return h.hexdigest()[:16]


def build_tree(dest, init=True, applets=True, extra_files=None, busybox=None):
    """Make the root directory at `dest` (which must not exist). Returns dest.

    init=False leaves /sbin/init out (the "missing init" medium); applets=False leaves out the applet links, so
    no /bin/sh either (an image with no init the kernel's fallbacks could find). extra_files: {relative path:
    bytes} added as they are (e.g. a large incompressible file for the low-memory medium)."""
    dest = Path(dest)
    busybox = Path(busybox or busybox_path())
    dest.mkdir(parents=True)
    for d in DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox, dest / "bin" / "busybox")
    (dest / "bin" / "busybox").chmod(0o755)
    if applets:
        from .arch import run_prefix

        # Another architecture's busybox lists its applets under qemu-user.
        proc = run(run_prefix(busybox) + [busybox, "--list-full"], capture=True, echo=False)
        for rel in proc.stdout.decode().split():
            link = dest / rel
            if rel in ("bin/busybox", "sbin/init", "linuxrc") or link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    if init:
        (dest / "sbin" / "init").write_text(INIT_SCRIPT)
        (dest / "sbin" / "init").chmod(0o755)
    (dest / "etc" / "os-release").write_text(OS_RELEASE)
    for rel, data in (extra_files or {}).items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dest


def make_squashfs(tree, out, comp="xz", compress_data=True):
    """mksquashfs `tree` into `out` (atomically: a temporary file renamed into place); returns out.

    Reproducible: fixed times, everything owned by root. compress_data=False stores file data uncompressed
    (fast for large random files, which do not compress anyway)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        argv = [find_tool("mksquashfs", "squashfs-tools"), tree, tmp, "-noappend", "-comp", comp, "-all-root",
                "-mkfs-time", "0", "-all-time", "0", "-no-progress", "-quiet"]
        if not compress_data:
            argv.append("-noD")
        run(argv, capture=True)
    return out
