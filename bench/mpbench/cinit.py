"""The C floor (issue 14): bench/cinit/cinit.c built as a static musl binary, and its image with the same modules as
the peer's (the same mpinit.kmod closure, the same /etc/modules.order, uncompressed .ko) and the same compression.

Contents:
  /init                     the cinit binary (musl-gcc -static -Os, stripped)
  /dev/console, /dev/null   device nodes, as in the peer's image
  /proc /sys /dev /etc      mount points and the config directory
  /lib/modules/<kver>/...   the closure's modules, at the same paths as in mpinit's image
  /etc/modules.order        their in-image paths, dependencies first (bench/mpbench/peer.py module_order())
  /etc/cinit.conf           "key value" lines: medium, fstype, options, image (where the medium is: no search)
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mpinit import compress, cpio
from mpinit.tree import Tree

from . import peer

SOURCE = Path(__file__).resolve().parent.parent / "cinit" / "cinit.c"
# The printk-stamped lines bench/cinit/cinit.c logs (parse.py reads them like the peer's).
HANDOFF = "cinit: switch_root"
VMHWM = "cinit: VmHWM:"
DIRS = ("dev", "proc", "sys", "etc", "lib/modules")


class CinitError(Exception):
    """The C floor could not be built; the message names the tool or file."""


@dataclass
class CinitImage:
    image: bytes
    binary_size: int


def build_binary(out_dir: Path) -> Path:
    """out_dir/cinit, rebuilt when cinit.c is newer. Kernel UAPI headers through buildsys.arches.kernel_headers()
    (musl-gcc does not search /usr/include)."""
    import sys

    root = SOURCE.parent.parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from buildsys import arches

    out_dir = Path(out_dir)
    out = out_dir / "cinit"
    if out.exists() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return out
    cc = shutil.which("musl-gcc")
    if cc is None:
        raise CinitError("musl-gcc not found (Debian package musl-tools)")
    try:
        headers = arches.kernel_headers(arches.native().name, out_dir / "cinit-include")
    except Exception as e:  # noqa: BLE001 - BuildError names the missing headers
        raise CinitError(str(e))
    tmp = out_dir / ".cinit.tmp"
    argv = [cc, "-static", "-Os", "-Wall", "-Wextra", "-Werror", "-isystem", str(headers),
            "-fno-asynchronous-unwind-tables", "-s", "-o", str(tmp), str(SOURCE)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CinitError("%s failed: %s" % (" ".join(argv), proc.stderr.strip()[-2000:]))
    tmp.rename(out)
    return out


def config_text(medium) -> str:
    """/etc/cinit.conf for an mpinit.media.Medium (device path, fstype, image path). vfat gets iocharset=utf8 as in
    the peer's script (Debian's default iocharset "ascii" needs nls_ascii, which the module set lacks)."""
    options = "iocharset=utf8" if medium.fstype == "vfat" else ""
    lines = ["medium %s" % medium.device, "fstype %s" % medium.fstype, "options %s" % options,
             "image %s" % medium.image]
    for line in lines:
        if "\n" in line:
            raise CinitError("medium field with a newline: %r" % line)
    return "".join(line + "\n" for line in lines)


def build_tree(binary: Path, closure, conf: str, mtime=0) -> Tree:
    tree = peer.base_tree(DIRS, closure, "cinit", mtime)   # as in the peer's image
    tree.add_file("init", Path(binary).read_bytes(), 0o755, source=str(binary))
    tree.add_file("etc/cinit.conf", conf.encode(), 0o644, source="cinit")
    return tree


def build(binary: Path, closure, medium, compression: str = compress.DEFAULT) -> CinitImage:
    """The C floor's image in memory (write it with mpinit.atomic.write_bytes)."""
    method, level = compress.parse_spec(compression)
    tree = build_tree(binary, closure, config_text(medium))
    archive = cpio.write_newc(tree.sorted_entries())
    return CinitImage(compress.compress(archive, method, level), Path(binary).stat().st_size)
