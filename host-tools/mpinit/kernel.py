"""A real Debian kernel for tests, the demo and benchmarks: linux-image-*-cloud-amd64, unpacked without root.

Its storage and filesystem drivers (virtio_blk, squashfs, overlay, loop, vfat, isofs, ...) are modules and the
package carries no modules.dep, so booting it exercises the agent's own module loading.
"""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .paths import build_dir
from .runner import ToolError, run

META_PACKAGE = "linux-image-cloud-amd64"


@dataclass(frozen=True)
class Kernel:
    package: str
    kver: str
    vmlinuz: Path
    modules_dir: Path     # .../lib/modules/<kver>
    config: Path          # .../boot/config-<kver>


def _resolve_package(meta):
    """The versioned image package the meta package depends on (e.g. linux-image-6.1.0-41-cloud-amd64)."""
    for attempt in (0, 1):
        proc = subprocess.run(["apt-cache", "depends", meta], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("Depends:") and "linux-image-" in line:
                return line.split()[1].strip("<>")
        if attempt == 0:
            run(["apt-get", "update", "-q"])  # a fresh machine may have no package lists yet
    raise ToolError("cannot resolve %s to a kernel package with apt-cache (is apt configured?)" % meta)


def ensure(cache=None, meta=META_PACKAGE) -> Kernel:
    """Download (apt-get download) and unpack (dpkg-deb -x) the kernel once; later calls reuse the cache."""
    cache = Path(cache) if cache else build_dir() / "kernel"
    stamp = cache / "kernel.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        k = Kernel(info["package"], info["kver"], Path(info["vmlinuz"]), Path(info["modules_dir"]),
                   Path(info["config"]))
        if k.vmlinuz.exists() and k.modules_dir.is_dir():
            return k
    cache.mkdir(parents=True, exist_ok=True)
    package = _resolve_package(meta)
    for old in cache.glob("*.deb"):
        old.unlink()
    run(["apt-get", "download", package], cwd=cache)
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
    stamp.write_text(json.dumps({"package": package, "kver": kver, "vmlinuz": str(k.vmlinuz),
                                 "modules_dir": str(k.modules_dir), "config": str(k.config)}))
    return k
