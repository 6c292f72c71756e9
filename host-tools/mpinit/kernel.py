"""A real Debian kernel for tests, the demo and benchmarks: linux-image-*-cloud-amd64 (or -cloud-arm64 with
arch="arm64"), unpacked without root.

Its storage and filesystem drivers (virtio_blk, squashfs, overlay, loop, vfat, isofs, ...) are modules and the
package carries no modules.dep, so booting it exercises the agent's own module loading.

Another architecture's kernel comes from the same archive as `PACKAGE:<dpkg arch>`: apt has to know that
architecture (`dpkg --add-architecture arm64 && apt-get update`, what buildsys/setup.py does for the arm64
build); nothing of it is installed, the package is only downloaded and unpacked into build/kernel-<arch>.
"""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import arch as archmod
from .paths import build_dir
from .runner import ToolError, run

META_PACKAGE = "linux-image-cloud-amd64"

# Debian's generic kernel for PCs, for the e2e boots that need a driver the cloud kernel lacks: ntfs3 (NTFS
# sticks). Debian 12's cloud kernel and its 6.1 generic kernel both have CONFIG_NTFS3_FS unset; its 6.12 series
# (linux-image-6.12-amd64, the kernel of Debian 13 offered to Debian 12) and Debian 13's linux-image-amd64 build
# it as a module. The first meta package apt knows is used.
GENERIC_META_PACKAGES = ("linux-image-6.12-amd64", "linux-image-amd64")


@dataclass(frozen=True)
class Kernel:
    package: str
    kver: str
    vmlinuz: Path
    modules_dir: Path     # .../lib/modules/<kver>
    config: Path          # .../boot/config-<kver>


def _resolve_package(meta, qualifier=""):
    """The versioned image package the meta package depends on (e.g. linux-image-6.1.0-41-cloud-amd64).
    qualifier: ":arm64" for another architecture's package (kept on the answer: apt-get download needs it)."""
    for attempt in (0, 1):
        proc = subprocess.run(["apt-cache", "depends", meta + qualifier], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                return line.split()[1].strip("<>")
        if attempt == 0:
            run(["apt-get", "update", "-q"])  # a fresh machine may have no package lists yet
    hint = ""
    if qualifier:
        hint = (" (apt must know the architecture: dpkg --add-architecture %s && apt-get update)"
                % qualifier.lstrip(":"))
    raise ToolError("cannot resolve %s%s to a kernel package with apt-cache%s" % (meta, qualifier,
                                                                                 hint or " (is apt configured?)"))


def _foreign(arch):
    """":<dpkg arch>" when arch is not what apt installs by default on this machine, else ""."""
    proc = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    return "" if proc.stdout.strip() == arch.debian else ":" + arch.debian


def ensure(cache=None, meta=None, arch="x86_64") -> Kernel:
    """Download (apt-get download) and unpack (dpkg-deb -x) the kernel once; later calls reuse the cache.

    arch: "x86_64" (build/kernel, linux-image-cloud-amd64) or "arm64" (build/kernel-arm64,
    linux-image-cloud-arm64)."""
    arch = archmod.get(arch)
    meta = meta or arch.kernel_meta
    default_cache = build_dir() / ("kernel" if arch.name == "x86_64" else "kernel-" + arch.name)
    cache = Path(cache) if cache else default_cache
    stamp = cache / "kernel.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        k = Kernel(info["package"], info["kver"], Path(info["vmlinuz"]), Path(info["modules_dir"]),
                   Path(info["config"]))
        if k.vmlinuz.exists() and k.modules_dir.is_dir():
            return k
    cache.mkdir(parents=True, exist_ok=True)
    qualified = _resolve_package(meta, _foreign(arch))
    package = qualified.partition(":")[0]
    for old in cache.glob("*.deb"):
        old.unlink()
    run(["apt-get", "download", qualified], cwd=cache)
    debs = sorted(cache.glob("%s_*.deb" % package))
    if not debs:
        raise ToolError("apt-get download %s left no .deb in %s" % (package, cache))
    root = cache / "root"
    run(["rm", "-rf", root])
    run(["dpkg-deb", "-x", debs[-1], root])
    kver = package[len("linux-image-"):]
    k = Kernel(package, kver, root / "boot" / ("vmlinuz-" + kver), root / "lib" / "modules" / kver,
               root / "boot" / ("config-" + kver))
    if not k.vmlinuz.exists() or not k.modules_dir.is_dir():
        raise ToolError("%s unpacked without %s or %s" % (debs[-1], k.vmlinuz, k.modules_dir))
    try:
        got = archmod.of_kernel(k.vmlinuz)
    except archmod.ArchError as e:
        raise ToolError(str(e))
    if got is not arch:
        raise ToolError("%s holds a %s kernel, not %s" % (debs[-1], got.name, arch.name))
    stamp.write_text(json.dumps({"package": package, "kver": kver, "vmlinuz": str(k.vmlinuz),
                                 "modules_dir": str(k.modules_dir), "config": str(k.config)}))
    return k


def ensure_generic(cache=None) -> Kernel:
    """Debian's generic x86_64 kernel (GENERIC_META_PACKAGES), fetched and cached like ensure()'s into
    build/kernel-generic. Its modules are xz-compressed (CONFIG_MODULE_COMPRESS_XZ); pack decompresses them."""
    cache = Path(cache) if cache else build_dir() / "kernel-generic"
    errors = []
    for meta in GENERIC_META_PACKAGES:
        try:
            return ensure(cache=cache, meta=meta)
        except ToolError as e:
            errors.append(str(e))
    raise ToolError("no generic kernel: %s" % "; ".join(errors))
