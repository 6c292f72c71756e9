"""The CPU architectures /init is built for, and where each one's binary goes.

    native()            the build machine's architecture ("x86_64" or "arm64")
    get(name)           an Arch (accepts "aarch64" and "amd64" as aliases); BuildError for anything else
    runtime_path(arch)  build/mpinit-init for the native architecture (as always), build/<arch>/mpinit-init else

The native build uses musl-gcc (Debian's musl-tools). A cross build uses Debian's cross compiler
(gcc-<triplet>) with musl's headers and libraries for the target from `musl-dev:<debian arch>` (installed after
`dpkg --add-architecture`): that package ships a gcc specs file (/usr/lib/<musl triplet>/musl-gcc.specs, the
one musl-gcc itself passes) that swaps glibc's headers, start files and libc for musl's. The kernel headers come
from `linux-libc-dev:<debian arch>`: /usr/include/linux is shared by every architecture, /usr/include/<gnu
triplet>/asm is the target's own (its ioctl, fcntl and signal numbers; syscall numbers come from musl's
<sys/syscall.h>, also the target's).
"""

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from .common import BUILD, RUNTIME, BuildError


@dataclass(frozen=True)
class Arch:
    name: str           # ours: build.py --arch, build/<name>/
    debian: str         # dpkg's architecture name
    gnu: str            # the GNU triplet: cross compiler prefix and /usr/include/<gnu>/asm
    musl: str           # musl's directory names: /usr/include/<musl>, /usr/lib/<musl>
    machines: tuple     # what uname -m says on it
    elf_machine: int    # ELF e_machine (System V gABI: EM_X86_64 = 62, EM_AARCH64 = 183)
    qemu_user: str      # the user-mode emulator that runs its binaries elsewhere (Debian's qemu-user)


ARCHES = {
    "x86_64": Arch("x86_64", "amd64", "x86_64-linux-gnu", "x86_64-linux-musl", ("x86_64", "amd64"), 62,
                   "qemu-x86_64"),
    "arm64": Arch("arm64", "arm64", "aarch64-linux-gnu", "aarch64-linux-musl", ("aarch64", "arm64"), 183,
                  "qemu-aarch64"),
}


def get(name):
    if isinstance(name, Arch):
        return name
    for arch in ARCHES.values():
        if name == arch.name or name in arch.machines or name == arch.debian:
            return arch
    raise BuildError("--arch %s: unknown architecture (known: %s)" % (name, ", ".join(ARCHES)))


def native():
    """The build machine's Arch; BuildError on a machine mpinit does not build for."""
    machine = platform.machine()
    try:
        return get(machine)
    except BuildError:
        raise BuildError("this machine is %s: mpinit builds on %s" % (machine, ", ".join(ARCHES)))


def is_native(arch):
    return get(arch).name == native().name


def runtime_path(arch=None):
    """Where the /init for arch goes: build/mpinit-init for the build machine's own, build/<arch>/mpinit-init."""
    arch = get(arch) if arch else native()
    return RUNTIME if is_native(arch) else BUILD / arch.name / RUNTIME.name


def kernel_headers(arch, out):
    """out/ with symlinks linux/, asm-generic/, asm/ to arch's kernel UAPI headers; returns out.

    musl-gcc searches musl's headers, not /usr/include; adding all of /usr/include would mix glibc's headers in.
    asm/ is taken from the target's own triplet directory only: with several architectures' linux-libc-dev
    installed, any other asm/ would give the binary another architecture's numbers."""
    arch = get(arch)
    linux = Path("/usr/include/linux")
    generic = Path("/usr/include/asm-generic")
    asm = Path("/usr/include") / arch.gnu / "asm"
    if is_native(arch) and not (asm / "unistd.h").exists() and Path("/usr/include/asm/unistd.h").exists():
        asm = Path("/usr/include/asm")  # a non-multiarch system
    if not (linux / "loop.h").exists() or not generic.is_dir() or not (asm / "unistd.h").exists():
        raise BuildError("%s kernel headers not found (/usr/include/linux/loop.h, asm-generic, %s): install "
                         "linux-libc-dev:%s" % (arch.name, asm, arch.debian))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, target in (("linux", linux), ("asm-generic", generic), ("asm", asm)):
        link = out / name
        if not link.is_symlink() or os.readlink(link) != str(target):
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
    return out


# No unwind tables (.eh_frame, 48 KB of a 600 KB budget): nothing in /init unwinds the stack. MicroPython's
# exceptions are setjmp/longjmp-like (py/nlr*.c), there is no C++ and no backtrace(); Debian's gcc emits
# asynchronous unwind tables by default.
NO_UNWIND = "-fno-asynchronous-unwind-tables -fno-unwind-tables"


def cross_toolchain(arch, headers):
    """(make variables, description) for a static musl build for arch on another machine.

    CC carries the specs file (make passes it to every compile and the link); CROSS_COMPILE names the binutils
    (strip, size) that MicroPython's py/mkenv.mk derives from it."""
    import shutil

    arch = get(arch)
    gcc = "%s-gcc" % arch.gnu
    specs = Path("/usr/lib") / arch.musl / "musl-gcc.specs"
    problems = []
    if not shutil.which(gcc):
        problems.append("%s not found (Debian package gcc-%s)" % (gcc, arch.gnu))
    if not specs.exists() or not (Path("/usr/lib") / arch.musl / "libc.a").exists():
        problems.append("%s / libc.a not found (Debian package musl-dev:%s, after `dpkg --add-architecture %s`)"
                        % (specs, arch.debian, arch.debian))
    if problems:
        raise BuildError("cannot cross-build for %s: %s" % (arch.name, "; ".join(problems)))
    # -z norelro: GNU ld aligns the end of the RELRO region to the target's maximum page size, 64 KiB on arm64,
    # which pads the file by up to 60 KiB. musl applies PT_GNU_RELRO only in its dynamic linker
    # (ldso/dynlink.c), never in a static binary, so the padding protects nothing; the segments keep their
    # 64 KiB alignment (the binary still runs on kernels with 16 or 64 KiB pages).
    return ({"CC": "%s -specs %s" % (gcc, specs), "CROSS_COMPILE": "%s-" % arch.gnu,
             "CFLAGS_EXTRA": "-isystem %s %s" % (headers, NO_UNWIND), "LDFLAGS_EXTRA": "-static -Wl,-z,norelro"},
            "%s with musl (%s)" % (gcc, specs))


def elf_machine(path):
    """The ELF e_machine of a file (System V gABI: a 16-bit field at offset 18), or None if it is not ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
