"""A minimal Debian root with systemd as its init, for the end-to-end proof that a persistent live system is shut
down cleanly by a REAL systemd (issue 10, item 3; tests/e2e/test_persistence_systemd.py).

What it is: Debian's `essential` package set plus systemd, systemd-sysv and udev, made by mmdebstrap, without
manual pages, documentation or locales; a fixed machine-id (no first-boot set-up), multi-user.target as the
default target, no getty, and one oneshot unit, mptest.service, that at boot

    prints `MPTEST-REPORT count=<n>` (n = the content of /var/lib/mptest/count, 0 when missing) and the mounts
    between MPINIT-MOUNTS-BEGIN/END to /dev/console, writes n+1, syncs and runs `systemctl poweroff`
    (with `mptest.noexitrd` on the kernel command line it first deletes /run/initramfs/shutdown: the
    counter-proof that systemd alone leaves the persistence filesystem dirty):

a NORMAL systemd shutdown (stop jobs, systemd-shutdown's unmount loop, and /run/initramfs/shutdown when the
initramfs left one there).

Safety: the host must never see a mount. mmdebstrap's unshare mode, run by root, unshares a mount namespace
(plus PID, UTS, IPC) for the chroot's /proc, /sys, /dev mounts (mmdebstrap(1), MODES: "If this mode is used as
the root user, the user namespace is not unshared (but the mount namespace and other still are)"). It does that
with a bare unshare(CLONE_NEWNS), which keeps the propagation of the mounts it copies: on a host whose / is a
shared mount (any systemd host), a mount inside could propagate back out. So mmdebstrap itself runs under
`unshare --mount --propagation private` (util-linux unshare(1): makes every mount of the new namespace private
first); and build() compares /proc/self/mountinfo before and after and fails loudly if the host's table changed.
Everything after mmdebstrap (the unit, config files) is plain file writes into the tree.

Packages come from the Debian mirror this machine's apt is configured with (`apt-get indextargets`: the
Origin: Debian entries for the native architecture and component main); no host name is written here.

Built as root only (mmdebstrap's unshare mode as a normal user needs /etc/subuid ranges and leaves the tree owned
by those ids, which `mpinit squash` could not read); ensure() says so instead of failing obscurely.

Cached under build/e2e/systemd-root/<key>/ (key: a hash of the recipe: suite, packages, mmdebstrap's command
line, the files and links written into the tree): `root.squashfs` made by `mpinit squash`, and `build.json` with
what was measured. The tree itself is deleted once squashed (about 150 MB). A failed build caches nothing.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..paths import build_dir
from ..runner import ToolError, find_tool, run

MARKER = "MPTEST-REPORT"
COUNT_FILE = "/var/lib/mptest/count"
# A fixed machine-id: systemd sees no first boot (no ConditionFirstBoot= units) and the journal's directory is stable.
MACHINE_ID = "6d70696e697474657374737973746400"   # "mpinittestsystd" in hex, then a zero byte

PACKAGES = ("systemd", "systemd-sysv", "udev")
VARIANT = "essential"

# dpkg never writes these (dpkg.cfg(5) path-exclude): the root stays small and fast to squash.
DPKG_OPTS = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
             "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
             "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/lintian/*",
             "path-exclude=/usr/share/zoneinfo/*")

# The test program, run by mptest.service. /dev/console is the kernel's console (console=ttyS0): the report does
# not depend on systemd's own output settings.
MPTEST = r"""#!/bin/sh
exec >/dev/console 2>&1
f=%(count)s
mkdir -p "${f%%/*}"
n=$(cat "$f" 2>/dev/null || echo 0)
echo "%(marker)s count=$n"
echo "MPINIT-MOUNTS-BEGIN"
cat /proc/mounts
echo "MPINIT-MOUNTS-END"
echo $((n + 1)) > "$f"
sync
# The counter-proof: without the initramfs' exitrd, what does systemd's own shutdown leave behind?
if grep -qw mptest.noexitrd /proc/cmdline; then rm -f /run/initramfs/shutdown && echo "MPTEST-NOEXITRD"; fi
echo "MPTEST-POWEROFF"
exec systemctl --no-block poweroff
""" % {"count": COUNT_FILE, "marker": MARKER}

MPTEST_UNIT = """[Unit]
Description=mpinit persistence test: report the count, increment it, power off
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/mptest

[Install]
WantedBy=multi-user.target
"""

# path in the root -> content (mode 0644 unless named in _EXECUTABLE)
FILES = {
    "etc/hostname": "mptest\n",
    "etc/machine-id": MACHINE_ID + "\n",
    "etc/fstab": "# the live root is assembled by the initramfs; nothing to mount\n",
    "usr/local/sbin/mptest": MPTEST,
    "etc/systemd/system/mptest.service": MPTEST_UNIT,
}
_EXECUTABLE = ("usr/local/sbin/mptest",)
# link path in the root -> target
LINKS = {
    "etc/systemd/system/default.target": "/lib/systemd/system/multi-user.target",
    "etc/systemd/system/multi-user.target.wants/mptest.service": "/etc/systemd/system/mptest.service",
    # masked: no login prompts wanted (quieter, faster boots)
    "etc/systemd/system/getty.target": "/dev/null",
    "etc/systemd/system/serial-getty@ttyS0.service": "/dev/null",
}


class RootError(Exception):
    """The systemd root cannot be built here; the message says why."""


def mirror_lines():
    """`deb URI SUITE main` for the Debian entries this machine's apt uses, native architecture only."""
    from .. import arch as archmod

    native = archmod.native().debian
    out = subprocess.run(["apt-get", "indextargets", "--format",
                          "$(REPO_URI) $(RELEASE) $(COMPONENT) $(ARCHITECTURE) $(ORIGIN)",
                          "Created-By: Packages"], capture_output=True, text=True, check=True).stdout
    lines = []
    for row in out.splitlines():
        f = row.split()
        if len(f) == 5 and f[2] == "main" and f[3] == native and f[4] == "Debian":
            line = "deb %s %s main" % (f[0], f[1])
            if line not in lines:
                lines.append(line)
    if not lines:
        raise RootError("apt has no Debian main archive for %s configured (apt-get indextargets); add one to "
                        "/etc/apt/sources.list.d and run apt-get update" % native)
    return lines


def suite(lines):
    """The release of the main archive (the entry whose suite has no -updates/-security suffix)."""
    for line in lines:
        s = line.split()[2]
        if "-" not in s:
            return s
    return lines[0].split()[2]


def recipe_key(suite_name):
    """What the root is made from (not this file's comments: a rebuild takes minutes)."""
    h = hashlib.sha256()
    recipe = [suite_name, VARIANT, PACKAGES, DPKG_OPTS, FILES, LINKS, mmdebstrap_argv("T", ["M"], suite_name)]
    h.update(json.dumps(recipe, sort_keys=True).encode())
    return h.hexdigest()[:16]


def mmdebstrap_argv(tree, lines, suite_name):
    argv = [find_tool("unshare", "util-linux"), "--mount", "--propagation", "private", "--",
            find_tool("mmdebstrap", "mmdebstrap"), "--mode=unshare", "--variant=" + VARIANT,
            "--include=" + ",".join(PACKAGES), "--format=directory"]
    argv += ["--dpkgopt=" + o for o in DPKG_OPTS]
    argv += [suite_name, str(tree)] + lines
    return argv


def customise(tree):
    """The test's files and unit links, written into the tree (plain files: no chroot, no mounts)."""
    tree = Path(tree)
    for rel, text in FILES.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(0o755 if rel in _EXECUTABLE else 0o644)
    for rel, target in LINKS.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to(target)


def _mountinfo():
    with open("/proc/self/mountinfo") as f:
        return f.read()


def build(out_dir):
    """mmdebstrap + customise + `mpinit squash` into out_dir/root.squashfs; returns the facts measured."""
    if os.geteuid() != 0:
        raise RootError("building the systemd test root needs root (mmdebstrap --mode=unshare as a normal user "
                        "needs /etc/subuid ranges and leaves a tree the user cannot read)")
    find_tool("mmdebstrap", "mmdebstrap")
    lines = mirror_lines()
    suite_name = suite(lines)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tree = out_dir / "root.tmp"
    if tree.exists():
        shutil.rmtree(tree)
    before = _mountinfo()
    t0 = time.monotonic()
    try:
        run(mmdebstrap_argv(tree, lines, suite_name))
    finally:
        after = _mountinfo()
        if after != before:
            raise RootError("the host's mount table changed while mmdebstrap ran (it must not): before:\n%s\n"
                            "after:\n%s" % (before, after))
    t1 = time.monotonic()
    customise(tree)
    squashfs = out_dir / "root.squashfs"
    # zstd: several times faster to make than the default xz on a busy machine, and fast to read in the guest.
    run([sys.executable, "-m", "mpinit", "squash", str(tree), "-o", str(squashfs), "--comp", "zstd"])
    t2 = time.monotonic()
    facts = {"suite": suite_name, "packages": list(PACKAGES), "variant": VARIANT,
             "mmdebstrap_s": round(t1 - t0, 1), "squash_s": round(t2 - t1, 1),
             "tree_bytes": _du(tree), "squashfs_bytes": squashfs.stat().st_size}
    shutil.rmtree(tree)
    return facts


def _du(path):
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def ensure(cache=None, log=print):
    """The cached squashfs of the systemd root (built on first use): Path. RootError when it cannot be built
    here, ToolError when a tool failed."""
    lines = mirror_lines()
    key = recipe_key(suite(lines))
    d = Path(cache) if cache else build_dir() / "e2e" / "systemd-root" / key
    squashfs = d / "root.squashfs"
    if squashfs.is_file() and (d / "build.json").is_file():
        return squashfs
    work = d.parent / (d.name + ".building")
    if work.exists():
        shutil.rmtree(work)
    try:
        facts = build(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    (work / "build.json").write_text(json.dumps(facts, indent=1) + "\n")
    if d.exists():
        shutil.rmtree(d)
    os.replace(work, d)
    log("systemd root: %s" % json.dumps(facts))
    return squashfs


__all__ = ["ensure", "build", "RootError", "ToolError", "MARKER", "COUNT_FILE"]
