"""A busybox-script initramfs that boots our test media the plain way (insmod, mount, loop, overlay,
switch_root): it proves the media and the QEMU runner with the real kernel independently of the agent.

/init reads `bb.chain=SRC:FSTYPE[,SRC:FSTYPE]...` from the kernel command line: the first SRC is a device, each
next one a file inside the previous mount (loop-mounted); the last mount becomes the overlay's lower layer, or
the root itself with `bb.overlay=0`. Modules are copied uncompressed and loaded in dependency order (modinfo -F
depends), since the Debian cloud kernel has the storage and filesystem drivers as modules.
"""

import shutil
import subprocess
from pathlib import Path

from mpinit.runner import run

MODULES = ["virtio_pci", "virtio_blk", "loop", "squashfs", "overlay", "vfat", "nls_cp437", "nls_ascii", "isofs"]

INIT = r"""#!/bin/sh
export PATH=/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /modules.order); do insmod /mods/$m.ko || echo "bbinit: insmod $m failed"; done
chain=; overlay=1
for w in $(cat /proc/cmdline); do
  case "$w" in bb.chain=*) chain="${w#bb.chain=}";; bb.overlay=0) overlay=0;; esac
done
n=0; prev=
for link in $(echo "$chain" | tr , ' '); do
  src="${link%:*}"; fs="${link##*:}"
  [ -n "$prev" ] && src="$prev$src"
  i=0; while [ -z "$prev" ] && [ ! -b "$src" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  mkdir -p /m/$n
  opt=ro; [ -n "$prev" ] && opt=ro,loop
  [ "$overlay" = 0 ] && opt=rw
  mount -t "$fs" -o "$opt" "$src" /m/$n || { echo "bbinit: FAILED mount $src ($fs)"; ls /dev; poweroff -f; }
  echo "bbinit: mounted $src ($fs) on /m/$n"
  prev=/m/$n; n=$((n+1))
done
if [ "$overlay" = 1 ]; then
  mount -t tmpfs tmpfs /cow && mkdir /cow/u /cow/w
  mount -t overlay overlay -o lowerdir=$prev,upperdir=/cow/u,workdir=/cow/w /newroot || poweroff -f
else
  mount --move $prev /newroot
fi
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/init
"""


def module_order(modules_dir, names):
    """The .ko files for `names` and their dependencies, dependencies first: [(name, path)]."""
    modules_dir = Path(modules_dir)
    files = {p.name[:-3].replace("-", "_"): p for p in modules_dir.rglob("*.ko")}
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        path = files[name]
        deps = subprocess.run(["modinfo", "-F", "depends", str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
        for dep in filter(None, deps.split(",")):
            visit(dep)
        order.append((name, path))

    for n in names:
        visit(n)
    return order


def make_initrd(out, modules_dir):
    """Write the initramfs to `out` (GNU cpio, newc, owner 0:0); returns out."""
    out = Path(out)
    root = out.parent / (out.name + ".d")
    if root.exists():
        shutil.rmtree(root)
    for d in ("bin", "dev", "proc", "sys", "mods", "newroot", "cow", "m"):
        (root / d).mkdir(parents=True)
    shutil.copy(shutil.which("busybox"), root / "bin" / "busybox")
    applets = subprocess.run([str(root / "bin" / "busybox"), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            (root / "bin" / a).symlink_to("busybox")
    order = module_order(modules_dir, MODULES)
    for name, path in order:
        shutil.copy(path, root / "mods" / (name + ".ko"))
    (root / "modules.order").write_text("\n".join(n for n, _ in order) + "\n")
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet", "-O", out], cwd=root,
        input=("\n".join(names) + "\n").encode(), echo=False)
    shutil.rmtree(root)
    return out
