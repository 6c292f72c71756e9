"""A real Debian kernel for tests, the demo and benchmarks: linux-image-*-cloud-amd64 (or -cloud-arm64 with
arch="arm64"), unpacked without root.

Its storage and filesystem drivers (virtio_blk, squashfs, overlay, loop, vfat, isofs, ...) are modules and the
package carries no modules.dep, so booting it exercises the agent's own module loading.

Another architecture's kernel comes from the same archive as `PACKAGE:<dpkg arch>`: apt has to know that
architecture (`dpkg --add-architecture arm64 && apt-get update`, what buildsys/setup.py does for the arm64
build); nothing of it is installed, the package is only downloaded and unpacked into build/kernel-<arch>.
"""

import json
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


def _resolve_package(meta, arch):
    """The versioned image package the meta package of `arch` depends on (e.g. linux-image-6.1.0-41-cloud-amd64),
    without an architecture qualifier."""
    name = archmod.apt_name(meta, arch)
    for attempt in (0, 1):
        proc = run(["apt-cache", "depends", name], echo=False, capture=True, check=False)
        for line in proc.stdout.decode(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                return line.split()[1].strip("<>").partition(":")[0]
        if attempt == 0:
            run(["apt-get", "update", "-q"])  # a fresh machine may have no package lists yet
    hint = " (is apt configured?)"
    if name != meta:
        hint = " (apt must know the architecture: dpkg --add-architecture %s && apt-get update)" % arch.debian
    raise ToolError("cannot resolve %s to a kernel package with apt-cache%s" % (name, hint))


def ensure(cache=None, meta=None, arch="x86_64") -> Kernel:
    """Download and unpack the kernel once (mpinit.arch.fetch_deb); later calls reuse the cache, checked by its
    kernel.json without asking apt.

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
    package = _resolve_package(meta, arch)
    root = archmod.fetch_deb(package, arch, cache)
    kver = package[len("linux-image-"):]
    k = Kernel(package, kver, root / "boot" / ("vmlinuz-" + kver), root / "lib" / "modules" / kver,
               root / "boot" / ("config-" + kver))
    if not k.vmlinuz.exists() or not k.modules_dir.is_dir():
        raise ToolError("%s unpacked without %s or %s" % (package, k.vmlinuz, k.modules_dir))
    try:
        got = archmod.of_kernel(k.vmlinuz)
    except archmod.ArchError as e:
        raise ToolError(str(e))
    if got is not arch:
        raise ToolError("%s holds a %s kernel, not %s" % (package, got.name, arch.name))
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
